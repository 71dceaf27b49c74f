"""The SMBIOS tables a test guest printed (vmmtest.dmi=1, see
make-guest-initramfs.sh), decoded by the host's dmidecode: used by the guest
suite (direct boot) and the firmware suite (tables placed by SeaBIOS/OVMF)."""
import os
import re
import shutil
import subprocess


def from_console(text):
    """(entry point bytes, table bytes, {key: value} of /sys/class/dmi/id) or
    None when the guest printed no tables."""
    entry = re.search(r"VMMTEST: dmi-entry ([0-9a-f]+)", text)
    table = re.search(r"VMMTEST: dmi-table ([0-9a-f]+)", text)
    if not entry or not table:
        return None
    fields = dict(re.findall(r"VMMTEST: dmi (\w+)=(.*?)\r?$", text, re.M))
    return bytes.fromhex(entry.group(1)), bytes.fromhex(table.group(1)), fields


def _fix(buf, at, start, length):
    buf[at] = 0
    buf[at] = (-sum(buf[start:start + length])) & 0xFF


def dump_image(entry, table):
    """dmidecode's --dump-bin layout: the entry point at 0 with its table
    address rewritten to 32 (checksums redone), the table at 32."""
    ep = bytearray(entry)
    if ep[:5] == b"_SM3_":
        ep[16:24] = (32).to_bytes(8, "little")
        _fix(ep, 5, 0, ep[6])
    elif ep[:4] == b"_SM_":
        ep[0x18:0x1C] = (32).to_bytes(4, "little")
        _fix(ep, 0x15, 0x10, 0x0F)
        _fix(ep, 4, 0, ep[5])
    else:
        raise ValueError(f"not an SMBIOS entry point: {bytes(ep[:8])!r}")
    return bytes(ep.ljust(32, b"\0")) + table


def decode(entry, table, workdir):
    """dmidecode's text for the tables, or None when dmidecode is missing.
    Raises AssertionError if dmidecode fails or writes to stderr."""
    tool = shutil.which("dmidecode") or next(
        (p for p in ("/usr/sbin/dmidecode", "/sbin/dmidecode") if os.access(p, os.X_OK)), None)
    if not tool:
        return None
    path = workdir / "smbios.bin"
    path.write_bytes(dump_image(entry, table))
    r = subprocess.run([tool, "--from-dump", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not r.stderr.strip(), f"dmidecode: status {r.returncode}\n{r.stderr}\n{r.stdout}"
    return r.stdout


# What a well-formed table never makes dmidecode print.
BAD = ["Invalid", "invalid", "Wrong", "wrong", "<BAD INDEX>", "<OUT OF SPEC>", "truncated", "Unknown Type"]


def problems(text, want):
    """The lines of `want` missing from dmidecode's `text`, and any BAD word."""
    out = [f"missing {w!r}" for w in want if w not in text]
    out += [f"dmidecode says {b!r}" for b in BAD if b in text]
    return out
