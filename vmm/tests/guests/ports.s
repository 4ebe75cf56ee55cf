# ports: in and out on ports no device owns, in every size; unknown ports must read all
# ones. Prints "ports ok" and resets, or "BAD".
    .include "common.inc"
    .text
main:
    mov $ports, %esi
next:
    movw (%esi), %dx
    cmp $0xfffe, %dx        # end marker (0xfffe itself is tested separately below)
    je done
    add $2, %esi
    mov $0x5a5a5a5a, %eax
    outb %al, %dx
    outw %ax, %dx
    outl %eax, %dx
    xor %eax, %eax
    inb %dx, %al
    cmp $0xff, %al
    jne fail
    inw %dx, %ax
    cmp $0xffff, %ax
    jne fail
    inl %dx, %eax
    cmp $0xffffffff, %eax
    jne fail
    jmp next
done:
    mov $0xffff, %dx        # the last port, 4-byte access runs past 0xffff
    inl %dx, %eax
    outl %eax, %dx
    mov $ok_msg, %esi
    call puts
    jmp reset

ports:
    .word 0x0000, 0x0001, 0x1234, 0x5555, 0xcfc, 0xcf8, 0x2f8, 0x3e8, 0x4000, 0xfff0, 0xfffe
ok_msg:
    .asciz "ports ok\n"
