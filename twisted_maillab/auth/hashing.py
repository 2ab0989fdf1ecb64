"""
Password hashes: the system's libcrypt for crypt(3) strings, and Dovecot's
C{{SCHEME}} prefixes for passwd-file entries.

Three ways to reach libcrypt, chosen by L{cryptBackend}:

  - C{libcrypt}: libxcrypt's C{crypt_rn} through L{ctypes}.  ctypes releases
    the GIL for the duration of the foreign call, so a 25 ms yescrypt in the
    check thread pool does not freeze the reactor thread.  Measured on this
    project's 2-core machine: while a thread loops on yescrypt, the reactor
    thread's worst scheduling gap is 2.5 ms through ctypes and 24 ms (one
    whole hash) through the C{crypt} module, which keeps the GIL.
  - C{crypt}: the standard library module (Python < 3.13).
  - C{crypt_r}: the C{crypt-r} package, the same module kept alive for
    Python 3.13+ where C{crypt} was removed (PEP 594).

C{auto} takes C{libcrypt} when it can be loaded and otherwise the module
for the running Python; all three understand every method the system's
libcrypt does (yescrypt C{$y$}, sha512-crypt C{$6$}, sha256-crypt C{$5$},
bcrypt C{$2b$}/C{$2y$}, md5-crypt C{$1$}).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hmac
import importlib
import secrets
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "CryptBackend",
    "cryptBackend",
    "cryptModuleName",
    "verifyCrypt",
    "verifyScheme",
    "makeHash",
    "splitScheme",
    "SCHEMES",
    "WRITE_SCHEMES",
    "UnknownScheme",
    "dummyHash",
    "dummyLike",
    "hashCost",
]

# libxcrypt's "struct crypt_data" is 32768 bytes (crypt.h: CRYPT_DATA_INTERNAL_SIZE
# + output and setting buffers); crypt_rn() takes the size so a smaller libc
# implementation would refuse rather than overflow.
_CRYPT_DATA_SIZE = 32768
_GENSALT_SIZE = 256
_COSTS = {"$2y$": 12, "$2b$": 12}


class UnknownScheme(ValueError):
    """
    A stored hash names a scheme this build cannot verify.
    """


@dataclass(frozen=True)
class CryptBackend:
    """
    One way to call crypt(3).

    @ivar name: C{libcrypt}, C{crypt} or C{crypt_r}.
    @ivar crypt: C{crypt(password: str, setting: str) -> str | None}; L{None}
        (or a string starting with C{*}) when the setting is not understood.
    @ivar gensalt: C{gensalt(prefix: str) -> str} for C{$y$}, C{$6$},
        C{$2b$}..., or L{None} when only the module's C{mksalt} is available.
    """

    name: str
    crypt: Callable[[str, str], str | None]
    gensalt: Callable[[str], str] | None = None


def cryptModuleName(version: tuple = sys.version_info) -> str:
    """
    The Python module that wraps crypt(3) on this interpreter: C{crypt}
    before 3.13, C{crypt_r} (the C{crypt-r} package) from 3.13 on.
    """
    return "crypt_r" if tuple(version[:2]) >= (3, 13) else "crypt"


def _moduleBackend(name: str) -> CryptBackend:
    with warnings.catch_warnings():
        # Python 3.11/3.12 warn that crypt is deprecated (PEP 594).
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(name)

    def crypt(password: str, setting: str) -> str | None:
        try:
            return module.crypt(password, setting)
        except OSError:
            # libxcrypt sets EINVAL for settings it does not know; the
            # module turns that into OSError.
            return None

    return CryptBackend(name, crypt, None)


def _libcryptBackend() -> CryptBackend:
    path = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    library = ctypes.CDLL(path, use_errno=True)
    cryptRn = library.crypt_rn
    cryptRn.restype = ctypes.c_char_p
    cryptRn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    gensaltRn = library.crypt_gensalt_rn
    gensaltRn.restype = ctypes.c_char_p
    gensaltRn.argtypes = [
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
    ]

    def crypt(password: str, setting: str) -> str | None:
        # A fresh buffer per call: crypt_rn keeps its scratch state there, so
        # concurrent calls from the pool's threads never share it.
        data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
        result = cryptRn(
            password.encode("utf-8"), setting.encode("utf-8"), data, _CRYPT_DATA_SIZE
        )
        if result is None:
            return None
        return result.decode("utf-8", "replace")

    def gensalt(prefix: str) -> str:
        output = ctypes.create_string_buffer(_GENSALT_SIZE)
        # count 0 = the method's default cost, except bcrypt whose libxcrypt
        # default (5) is far too cheap today: 12, as Python's mksalt uses.
        # rbytes NULL = libxcrypt reads the OS random source itself.
        count = _COSTS.get(prefix, 0)
        result = gensaltRn(prefix.encode("ascii"), count, None, 0, output, _GENSALT_SIZE)
        if result is None:
            raise ValueError(f"libcrypt cannot make a {prefix} salt")
        return result.decode("ascii")

    return CryptBackend("libcrypt", crypt, gensalt)


def cryptBackend(preference: str = "auto") -> CryptBackend:
    """
    Load a crypt(3) backend.

    @param preference: C{auto}, C{libcrypt}, C{crypt} or C{crypt_r}.  The
        C{crypt_r} value forces the Python 3.13 code path on any version.
    @raise ImportError: the requested backend cannot be loaded (the
        message names the package to install).
    """
    if preference == "auto":
        try:
            return _libcryptBackend()
        except (OSError, AttributeError):
            preference = cryptModuleName()
    if preference == "libcrypt":
        try:
            return _libcryptBackend()
        except (OSError, AttributeError) as e:
            raise ImportError(f"libcrypt (libxcrypt's crypt_rn) cannot be loaded: {e}") from e
    if preference in ("crypt", "crypt_r"):
        try:
            return _moduleBackend(preference)
        except ImportError as e:
            hint = "pip install crypt-r" if preference == "crypt_r" else "a Python < 3.13"
            raise ImportError(f"the {preference} module is missing ({hint})") from e
    raise ValueError(f"unknown crypt backend {preference!r}")


def verifyCrypt(backend: CryptBackend, password: str, stored: str) -> bool:
    """
    Check a password against a crypt(3) string in constant time.

    Locked (C{!...}, C{*...}) and empty hashes never verify.
    """
    if not stored or stored[0] in "!*":
        return False
    computed = backend.crypt(password, stored)
    if not computed or computed.startswith("*"):
        return False
    return hmac.compare_digest(computed.encode("utf-8"), stored.encode("utf-8"))


# ---------------------------------------------------------------------------
# Dovecot password schemes (doc.dovecot.org, "Password Schemes").

# Scheme -> the crypt(3) prefix it is written with.
_CRYPT_PREFIXES = {
    "SHA512-CRYPT": "$6$",
    "SHA256-CRYPT": "$5$",
    "MD5-CRYPT": "$1$",
    # Dovecot writes $2y$; libxcrypt reads $2a$, $2b$ and $2y$.
    "BLF-CRYPT": "$2y$",
    # Dovecot's CRYPT means "whatever libcrypt understands"; we write
    # yescrypt, Debian's default since bullseye.
    "CRYPT": "$y$",
}

#: Every scheme L{verifyScheme} understands.
SCHEMES = frozenset(_CRYPT_PREFIXES) | {"ARGON2ID", "ARGON2I", "PLAIN", "CLEAR"}

#: Schemes L{makeHash} writes (the strong ones).
WRITE_SCHEMES = ("ARGON2ID", "SHA512-CRYPT", "BLF-CRYPT", "CRYPT")


def splitScheme(stored: str, default: str = "CRYPT") -> tuple[str, str]:
    """
    Split C{{SHA512-CRYPT}$6$...} into C{("SHA512-CRYPT", "$6$...")}; a
    value without braces uses C{default} (Dovecot's C{default_pass_scheme}).
    Dovecot's C{.b64}/C{.hex} encoding suffixes are not supported.
    """
    if stored.startswith("{"):
        end = stored.find("}")
        if end > 1:
            return stored[1:end].upper(), stored[end + 1 :]
    return default, stored


def _argon2():
    try:
        import argon2
    except ImportError:
        raise UnknownScheme(
            "ARGON2 hashes need the argon2-cffi package (pip install argon2-cffi)"
        ) from None
    return argon2


def verifyScheme(backend: CryptBackend, password: str, stored: str) -> bool:
    """
    Check a password against a passwd-file password field.

    @param stored: C{{SCHEME}value}, or a bare crypt(3) string.
    @raise UnknownScheme: the scheme is unknown or its library is missing;
        the caller logs it and refuses the login.
    """
    scheme, value = splitScheme(stored)
    if scheme in _CRYPT_PREFIXES:
        if scheme == "BLF-CRYPT" and value.startswith("$2"):
            return _verifyBcrypt(backend, password, value)
        return verifyCrypt(backend, password, value)
    if scheme in ("ARGON2ID", "ARGON2I"):
        argon2 = _argon2()
        try:
            return argon2.PasswordHasher().verify(value, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False
    if scheme in ("PLAIN", "CLEAR"):
        # Warned about when the file is loaded (see passwdfile.PasswdFile).
        return hmac.compare_digest(password.encode("utf-8"), value.encode("utf-8"))
    raise UnknownScheme(f"unsupported password scheme {{{scheme}}}")


def _verifyBcrypt(backend: CryptBackend, password: str, value: str) -> bool:
    # libxcrypt does bcrypt; the bcrypt package is the fallback for a libc
    # whose crypt(3) does not (musl, macOS).
    computed = backend.crypt(password, value)
    if computed and not computed.startswith("*"):
        return hmac.compare_digest(computed.encode(), value.encode())
    try:
        import bcrypt
    except ImportError:
        raise UnknownScheme(
            "this libcrypt has no bcrypt; install the bcrypt package"
        ) from None
    try:
        return bcrypt.checkpw(password.encode("utf-8"), value.encode("ascii"))
    except ValueError:
        return False


def _salt(backend: CryptBackend, prefix: str) -> str:
    if backend.gensalt is not None:
        return backend.gensalt(prefix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(backend.name)
    methods = {
        "$6$": module.METHOD_SHA512,
        "$5$": module.METHOD_SHA256,
        "$2y$": module.METHOD_BLOWFISH,
        "$1$": module.METHOD_MD5,
    }
    if prefix not in methods:
        raise ValueError(f"the {backend.name} module cannot make {prefix} salts")
    salt = module.mksalt(methods[prefix])
    # mksalt writes $2b$; Dovecot writes $2y$ (same algorithm).
    return salt.replace("$2b$", "$2y$", 1)


def makeHash(backend: CryptBackend, password: str, scheme: str = "ARGON2ID") -> str:
    """
    Hash a password for a passwd-file, with its C{{SCHEME}} prefix.

    @param scheme: one of L{WRITE_SCHEMES} (or the weak ones, for tests).
    """
    scheme = scheme.upper()
    if scheme in ("ARGON2ID", "ARGON2I"):
        argon2 = _argon2()
        kind = argon2.Type.ID if scheme == "ARGON2ID" else argon2.Type.I
        return "{" + scheme + "}" + argon2.PasswordHasher(type=kind).hash(password)
    if scheme in _CRYPT_PREFIXES:
        prefix = _CRYPT_PREFIXES[scheme]
        salt = _salt(backend, prefix)
        result = backend.crypt(password, salt)
        if not result or result.startswith("*"):
            raise ValueError(f"libcrypt refused to make a {scheme} hash")
        return "{" + scheme + "}" + result
    if scheme in ("PLAIN", "CLEAR"):
        return "{PLAIN}" + password
    raise UnknownScheme(f"cannot write password scheme {{{scheme}}}")


def dummyHash(backend: CryptBackend, scheme: str = "SHA512-CRYPT") -> str:
    """
    A hash of a random password in C{scheme} (with its C{{SCHEME}}
    prefix), verified against when a login cannot reach a real hash (an
    unknown name, a locked account) so that it takes as long as a wrong
    password.  Falls back to sha512-crypt when this build cannot write
    C{scheme} (no argon2-cffi, a crypt module without yescrypt salts).
    """
    password = secrets.token_urlsafe(16)
    try:
        return makeHash(backend, password, scheme)
    except (UnknownScheme, ValueError):
        return makeHash(backend, password, "SHA512-CRYPT")


def hashCost(stored: str) -> str:
    """
    The method and cost part of a crypt(3) string, without salt or hash:
    C{$y$j9T} (yescrypt's parameters), C{$6$rounds=10000}, C{$6$}, C{$2b$12}.
    Two hashes with the same cost take the same time to verify.
    """
    parts = stored.split("$")
    if len(parts) < 3 or parts[0]:
        return stored[:2]  # traditional DES or unknown: no parameters
    method, field = parts[1], parts[2]
    if method in ("y", "gy", "7", "2a", "2b", "2y") or field.startswith("rounds="):
        return f"${method}${field}"
    return f"${method}$"


def dummyLike(backend: CryptBackend, stored: str) -> str | None:
    """
    A crypt(3) hash of a random password with the method and cost of
    C{stored} (a real account's hash, whose setting libcrypt reuses), or
    L{None} when libcrypt cannot compute it.
    """
    result = backend.crypt(secrets.token_urlsafe(16), stored)
    if not result or result.startswith("*"):
        return None
    return result
