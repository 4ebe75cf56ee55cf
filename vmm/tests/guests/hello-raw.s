# hello-raw: the same tiny guest as hello-pvh, as an isol raw real-mode image (loaded at
# 0x10000, entered at 0x1000:0x0010 with every segment register 0x1000). PVM hosts run
# real-mode code, so this one boots there too.
    .code16
    .ascii "ISOLRAW1"
    .quad 0
_start:
    mov $msg, %si
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  mov $0xfe, %al
    outb %al, $0x64
    lidt null_idt
    ud2
3:  hlt
    jmp 3b

    .balign 8
null_idt:
    .word 0
    .long 0
msg:
    .asciz "Hello from isol tiny guest\n"
