# strio: string port I/O with big counts. rep outsb of 64 KiB, rep insb of 64 KiB and rep
# insl of 16 Ki dwords to and from an unknown port (KVM hands the VMM up to a page per exit;
# under PVM's emulator, one element per exit, so the counts stay moderate) (reads must land as all ones in memory), rep insb into MMIO
# space, then "strio ok" sent with rep outsb to the serial port, then reset.
    .include "common.inc"
    .text
main:
    cld
    mov $0x1234, %dx
    mov $0x200000, %esi
    mov $0x10000, %ecx
    rep outsb
    mov $0x300000, %edi
    mov $0x10000, %ecx
    rep insb
    cmpb $0xff, 0x300000
    jne fail
    cmpb $0xff, 0x30ffff
    jne fail
    cmpb $0, 0x310000
    jne fail
    mov $0x400000, %edi
    mov $0x4000, %ecx
    rep insl
    cmpl $0xffffffff, 0x40fffc
    jne fail
    mov $0xd0000000, %edi   # outside RAM
    mov $0x1000, %ecx
    rep insb
    mov $ok_msg, %esi
    mov $ok_len, %ecx
    mov $0x3f8, %dx
    rep outsb
    jmp reset
ok_msg:
    .ascii "strio ok\n"
    .set ok_len, . - ok_msg
