# spin-raw: a tiny isol raw real-mode guest that reports READY and STARTED on the isol
# channel, prints "started\n" and then spins forever: only the workload timeout (or a
# signal to isol) ends it.
    .code16
    .ascii "ISOLRAW1"
    .quad 0
_start:
    mov $0xee3, %dx
    mov $1, %al
    outb %al, %dx
    mov $2, %al
    outb %al, %dx
    cld
    mov $msg, %si
    mov $8, %cx
    mov $0xee0, %dx
    rep outsb
1:  jmp 1b
msg:
    .ascii "started\n"
