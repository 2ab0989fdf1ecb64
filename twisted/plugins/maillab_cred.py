# The maillab password checkers as twisted.cred.strcred plugins
# (maillab-unix, maillab-pam, passwd-file); see twisted_maillab.auth.strcred.
from twisted_maillab.auth.strcred import (
    pamCheckerFactory,
    passwdFileCheckerFactory,
    unixCheckerFactory,
)

__all__ = ["unixCheckerFactory", "pamCheckerFactory", "passwdFileCheckerFactory"]
