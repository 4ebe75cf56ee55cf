# halt: prints "halted" and halts with interrupts off forever (the vCPU sleeps in KVM).
    .include "common.inc"
    .text
main:
    mov $msg, %esi
    call puts
    cli
1:  hlt
    jmp 1b
msg:
    .asciz "halted\n"
