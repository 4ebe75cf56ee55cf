# mmio: reads and writes outside RAM: in the 32-bit hole, at the top of 4 GiB, next to the
# IOAPIC and LAPIC. Reads of nothing must be all ones. Prints "mmio ok" and resets.
    .include "common.inc"
    .text
main:
    mov $addrs, %esi
1:  mov (%esi), %edi
    test %edi, %edi
    jz 2f
    add $4, %esi
    movl $0xdeadbeef, (%edi)
    movb $0x12, 1(%edi)
    movl (%edi), %eax
    cmp $0xffffffff, %eax
    jne fail
    jmp 1b
2:  movl $0x1, 0xfffffffc   # top of the 32-bit space
    mov $ok_msg, %esi
    call puts
    jmp reset
addrs:
    .long 0xc0000000, 0xd0000000, 0xfebff000, 0xfed00000, 0xfffbb000, 0
ok_msg:
    .asciz "mmio ok\n"
