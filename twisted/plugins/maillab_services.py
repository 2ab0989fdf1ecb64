# The shipped services as IServiceBuilder plugins, listed by
# getPlugins(IServiceBuilder) beside those of other packages
# (twisted_maillab.plugins).  A module apart from maillab.py: twistd imports
# every module offering a service maker, for any command, and this one
# imports the service composition.
from twisted_maillab import service as _service

for _section, _target in _service.SHIPPED_BUILDERS.items():
    globals()[f"maillab_{_section}"] = _service.SectionBuilder(_section, _target)
del _section, _target
