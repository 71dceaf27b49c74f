"""Boot sectors for firmware tests and benchmarks: 16-bit code that prints
"BOOT-OK tag=TAG drive=" and the BIOS drive number (one raw byte) on COM1,
then powers the VM off through the ACPI PM1a control register at 0x604
(SLP_TYP 5, this VMM's S5) or resets it through port 0xcf9."""


# The boot sector's code; `as --32` of:
#   cli; xor %ax,%ax; mov %ax,%ds; mov %dl,%bl; mov $0x7c25,%si; mov $0x3f8,%dx
#   1: lodsb; test %al,%al; jz 2f; out %al,%dx; jmp 1b
#   2: mov %bl,%al; out %al,%dx; mov $0x0a,%al; out %al,%dx
#   mov $0x604,%dx; mov $0x3400,%ax; out %ax,%dx   (SLP_TYP 5 | SLP_EN: soft off)
#   3: hlt; jmp 3b
# followed by the NUL-terminated message at 0x7c25.
CODE = bytes.fromhex("fa31c08ed888d3be257cbaf803ac84c07403eeebf888d8eeb00aeeba0406b80034eff4ebfd")
# The same, ending in a reset through the reset control register instead:
#   mov $0xcf9,%dx; mov $0x06,%al; out %al,%dx; 3: hlt; jmp 3b; nop
RESET_TAIL = bytes.fromhex("baf90cb006eef4ebfd90")
assert len(CODE) == 0x25 and CODE[-10:] == bytes.fromhex("ba0406b80034eff4ebfd")


def boot_sector(tag: str, reset: bool = False) -> bytes:
    sector = bytearray(512)
    code = CODE[:-10] + RESET_TAIL if reset else CODE
    body = code + f"BOOT-OK tag={tag} drive=".encode() + b"\0"
    sector[: len(body)] = body
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


# A bzImage whose real-mode setup code (entered by a boot loader at
# setup segment + 0x20, here QEMU's linuxboot_dma option ROM) prints "R",
# the 4 raw bytes of the header's ramdisk_size, "C" and the command line at
# cmd_line_ptr on COM1, then powers off like the boot sector. `as --32` of:
#   mov %cs,%ax; sub $0x20,%ax; mov %ax,%ds; mov $0x3f8,%dx
#   mov $'R',%al; out %al,%dx; mov $0x21c,%si; mov $4,%cx; 1: lodsb; out %al,%dx; loop 1b
#   mov $'C',%al; out %al,%dx; mov 0x228,%eax; shr $4,%eax; mov %ax,%ds; xor %si,%si
#   2: lodsb; test %al,%al; jz 3f; out %al,%dx; jmp 2b
#   3: mov $0x0a,%al; out %al,%dx; mov $0x604,%dx; mov $0x3400,%ax; out %ax,%dx; 4: hlt; jmp 4b
SETUP_CODE = bytes.fromhex(
    "8cc883e8208ed8baf803b052eebe1c02b90400aceee2fcb043ee66a1280266c1e8048ed831f6ac84c07403eeebf8"
    "b00aeeba0406b80034eff4ebfd")


def setup_probe_bzimage() -> bytes:
    """One setup sector (header, then SETUP_CODE at 0x26c) and 512 bytes
    of protected-mode "kernel"; boot protocol 2.15, relocatable, 64-bit."""
    f = bytearray(1024 + 512)

    def put(off, value, n):
        f[off:off + n] = value.to_bytes(n, "little")

    f[0x1f1] = 1                  # setup_sects
    put(0x1fe, 0xAA55, 2)         # boot_flag
    f[0x200:0x202] = b"\xeb\x6a"  # jump over the header to 0x26c
    f[0x202:0x206] = b"HdrS"
    put(0x206, 0x020F, 2)         # protocol 2.15
    f[0x211] = 0x01               # loadflags: LOADED_HIGH
    put(0x22C, 0x7FFFFFFF, 4)     # initrd_addr_max
    put(0x230, 0x200000, 4)       # kernel_alignment
    f[0x234] = 1                  # relocatable_kernel
    put(0x236, 0x1, 2)            # xloadflags: XLF_KERNEL_64
    put(0x238, 2047, 4)           # cmdline_size
    put(0x258, 0x1000000, 8)      # pref_address
    put(0x260, 0x200000, 4)       # init_size
    f[0x26C:0x26C + len(SETUP_CODE)] = SETUP_CODE
    return bytes(f)
