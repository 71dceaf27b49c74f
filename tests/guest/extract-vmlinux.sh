#!/usr/bin/env bash
# extract-vmlinux.sh BZIMAGE OUT
#
# Writes the uncompressed ELF vmlinux that is inside an x86 bzImage (e.g.
# Debian's /boot/vmlinuz-*, XZ-compressed).  Debian's vmlinux carries a PVH
# entry note (XEN_ELFNOTE_PHYS32_ENTRY), so the result can be booted with the
# PVH boot protocol.
#
# How: the x86 boot protocol header (2.08+) gives the compressed payload's
# offset and length (payload_offset at 0x248, payload_length at 0x24c,
# relative to the protected-mode code at (setup_sects + 1) * 512).  The
# compressor is identified by the payload's magic bytes (gzip, xz, zstd,
# lzma, bzip2, lz4, lzo) and the matching tool decompresses it.  The kernel's
# build appends the uncompressed size (le32) to the payload; the output must
# start with the ELF magic and have exactly that size.  If the header cannot
# be used, the whole file is scanned for compressor magics instead and the
# first candidate that decompresses to an ELF file wins.
set -euo pipefail
PROG=extract-vmlinux.sh
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$0")/lib.sh"

[[ $# -eq 2 ]] || { echo "usage: $0 BZIMAGE OUT" >&2; exit 1; }
in=$1 out=$2
[[ -r $in ]] || die "cannot read $in"

work=$(mktemp -d "${TMPDIR:-/tmp}/extract-vmlinux.XXXXXX")
trap 'rm -rf "$work"' EXIT

u8()  { od -An -v -tu1 -j "$2" -N1 "$1" | tr -d ' \n'; }
u16() { od -An -v -tu2 -j "$2" -N2 "$1" | tr -d ' \n'; }
u32() { od -An -v -tu4 -j "$2" -N4 "$1" | tr -d ' \n'; }
hexbytes() { od -An -v -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }

# decompress FILE FORMAT > stdout.  Trailing bytes after the stream (the
# appended size, or the rest of the image when scanning) make some tools
# complain; the result is judged by its content, not by their exit status.
decompress() {
    case $2 in
        gzip)  gzip -dc <"$1" 2>/dev/null || true ;;
        xz)    xz -dc --single-stream <"$1" 2>/dev/null || true ;;
        lzma)  xz -dc --format=lzma --single-stream <"$1" 2>/dev/null || true ;;
        zstd)  zstd -dcq <"$1" 2>/dev/null || true ;;
        bzip2) bzip2 -dc <"$1" 2>/dev/null || true ;;
        lz4)   lz4 -dc <"$1" 2>/dev/null || true ;;
        lzo)   lzop -dc <"$1" 2>/dev/null || true ;;
    esac
}

format_of_magic() { # hex bytes at the start of a stream
    case $1 in
        fd377a585a00*) echo xz ;;
        28b52ffd*) echo zstd ;;
        1f8b08*) echo gzip ;;
        5d0000*) echo lzma ;;
        425a68*) echo bzip2 ;;
        02214c18*) echo lz4 ;;
        894c5a4f*) echo lzo ;;
        *) echo unknown ;;
    esac
}

is_elf() { [[ -s $1 && $(hexbytes "$1" 0 4) == 7f454c46 ]]; }

extracted=""

# 1. Use the boot protocol header.
if [[ $(hexbytes "$in" $((0x202)) 4) == 48647253 ]]; then # "HdrS"
    version=$(u16 "$in" $((0x206)))
    setup_sects=$(u8 "$in" $((0x1f1)))
    [[ $setup_sects -eq 0 ]] && setup_sects=4
    if [[ $version -ge $((0x208)) ]]; then
        pm_start=$(((setup_sects + 1) * 512))
        poff=$(u32 "$in" $((0x248)))
        plen=$(u32 "$in" $((0x24c)))
        start=$((pm_start + poff))
        dd if="$in" of="$work/payload" bs=64K iflag=skip_bytes,count_bytes skip="$start" count="$plen" status=none
        fmt=$(format_of_magic "$(hexbytes "$work/payload" 0 6)")
        want=$(u32 "$work/payload" $((plen - 4)))
        if [[ $fmt != unknown ]]; then
            decompress "$work/payload" "$fmt" >"$work/vmlinux"
            got=$(stat -c %s "$work/vmlinux")
            if is_elf "$work/vmlinux" && [[ $got -eq $want ]]; then
                extracted=$work/vmlinux
                note "boot protocol $((version >> 8)).$((version & 255)), $fmt payload at $start ($plen bytes) -> $got bytes"
            else
                note "header payload ($fmt) did not give an ELF of $want bytes (got $got); scanning"
            fi
        else
            note "unknown compression magic in header payload; scanning"
        fi
    fi
fi

# 2. Fall back to scanning for compressor magics.
if [[ -z $extracted ]]; then
    declare -A pattern=(
        [xz]='\xfd7zXZ\x00' [zstd]='\x28\xb5\x2f\xfd' [gzip]='\x1f\x8b\x08'
        [lzma]='\x5d\x00\x00\x00' [bzip2]='BZh' [lz4]='\x02\x21\x4c\x18' [lzo]='\x89LZO'
    )
    for fmt in xz zstd gzip lzma bzip2 lz4 lzo; do
        while read -r off; do
            [[ -n $off ]] || continue
            dd if="$in" of="$work/cand" bs=64K iflag=skip_bytes skip="$off" status=none
            decompress "$work/cand" "$fmt" >"$work/vmlinux"
            if is_elf "$work/vmlinux"; then
                extracted=$work/vmlinux
                note "found $fmt stream at offset $off by scanning"
                break 2
            fi
        done < <(LC_ALL=C grep -obUaP "${pattern[$fmt]}" "$in" 2>/dev/null | cut -d: -f1 | head -n 20)
    done
fi

[[ -n $extracted ]] || die "no compressed ELF kernel found in $in"

# Report the PVH note when readelf (binutils) is available; not required.
if command -v readelf >/dev/null 2>&1; then
    if readelf -n "$extracted" 2>/dev/null | grep -E 'Xen.*(PHYS32_ENTRY|Unknown note type: \(0x00000012\))' >/dev/null; then
        note "PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) present"
    else
        note "warning: no PVH entry note found in the ELF"
    fi
fi

mkdir -p "$(dirname "$out")"
mv -f "$extracted" "$out"
note "wrote $out ($(stat -c %s "$out") bytes)"
