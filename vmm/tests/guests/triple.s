# triple: prints "faulting" and triple-faults (no i8042 reset first).
    .include "common.inc"
    .text
main:
    mov $msg, %esi
    call puts
    jmp triple_fault
msg:
    .asciz "faulting\n"
