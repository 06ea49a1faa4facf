"""Finding the pystrib binary and the config file it will read."""

import configparser
import os
import shutil

from .errors import BinaryNotFound

# Set by pystributed.set_binary(); wins over everything else.
_explicit = None

INSTALL_HINT = (
    "build it (cmake -S . -B build && cmake --build build) and put the "
    "directory holding 'pystrib' on PATH, or set PYSTRIB_BIN to the binary "
    "(os.environ['PYSTRIB_BIN'] = '/path/to/pystrib' in the notebook), or "
    "give its path as 'binary' under [notebook] in the pystrib config"
)


def set_binary(path):
    """Uses PATH (a file) as the pystrib binary from now on; None forgets it."""
    global _explicit
    _explicit = os.path.expanduser(path) if path else None


def config_path(explicit=None):
    """The config file pystrib reads: -c FILE, else $PYSTRIB_CONFIG, else
    ./pystrib.ini, else $XDG_CONFIG_HOME/pystrib/config.ini or
    ~/.config/pystrib/config.ini (the same order as src/config.c)."""
    if explicit:
        return explicit
    env = os.environ.get("PYSTRIB_CONFIG")
    if env:
        return env
    if os.path.exists("pystrib.ini"):
        return "pystrib.ini"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return os.path.join(xdg, "pystrib", "config.ini")
    return os.path.expanduser("~/.config/pystrib/config.ini")


def configured_binary(config=None):
    """`binary` under [notebook] in the config file, or None."""
    parser = configparser.ConfigParser(interpolation=None, strict=False,
                                       inline_comment_prefixes=(";",))
    try:
        parser.read(os.path.expanduser(config_path(config)), encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    value = parser.get("notebook", "binary", fallback="").strip()
    return os.path.expanduser(value) if value else None


def _usable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_binary(config=None):
    """The pystrib binary to run: set_binary()'s, else $PYSTRIB_BIN, else
    $PYSTRIB_NOTEBOOK_BINARY, else the config's [notebook] binary, else
    'pystrib' on PATH. A path given by one of the first four that is not an
    executable file is an error naming where it came from, rather than
    silently falling back to another binary."""
    for source, path in (("pystributed.set_binary()", _explicit),
                         ("PYSTRIB_BIN", os.environ.get("PYSTRIB_BIN") or None),
                         # pystrib's own name for [notebook] binary (PYSTRIB_<SECTION>_<KEY>)
                         ("PYSTRIB_NOTEBOOK_BINARY",
                          os.path.expanduser(os.environ.get("PYSTRIB_NOTEBOOK_BINARY", "")) or None),
                         ("[notebook] binary in %s" % config_path(config),
                          configured_binary(config))):
        if not path:
            continue
        if _usable(path):
            return os.path.abspath(path)
        why = "does not exist" if not os.path.exists(path) else "is not an executable file"
        raise BinaryNotFound("pystrib binary '%s' (from %s) %s" % (path, source, why),
                             hint=INSTALL_HINT)
    found = shutil.which("pystrib")
    if found:
        return found
    raise BinaryNotFound("cannot find the pystrib binary: it is not on PATH "
                         "(%s) and PYSTRIB_BIN is not set" % os.environ.get("PATH", ""),
                         hint=INSTALL_HINT)
