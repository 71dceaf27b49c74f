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
