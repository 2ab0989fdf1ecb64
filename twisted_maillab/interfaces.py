"""
The seams other Twisted applications plug into.
"""

from zope.interface import Attribute, Interface


class IServiceBuilder(Interface):
    """
    Builds the service for one configuration section (C{[dns]}, C{[smtp]},
    ...).  L{twisted_maillab.service.makeService} calls one builder per
    enabled listening section.
    """

    section = Attribute("The name of the ini section this builder serves.")

    def __call__(config, resources):
        """
        @param config: the whole L{twisted_maillab.config.Config}.
        @param resources: the shared L{twisted_maillab.service.Resources}
            (TLS context, portal, store, reactor).
        @return: an L{twisted.application.service.IService} (usually a
            L{MultiService} of listeners from C{resources.listen}).
        @raise twisted_maillab.config.ConfigError: for problems found while
            building (unreadable zone, missing inherited socket, ...).
        """
