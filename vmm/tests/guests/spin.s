# spin: prints "spinning" and loops forever with interrupts off: only the deadline or a
# stop can end it.
    .include "common.inc"
    .text
main:
    mov $msg, %esi
    call puts
    cli
1:  jmp 1b
msg:
    .asciz "spinning\n"
