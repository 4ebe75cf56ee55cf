# flood-raw: a tiny isol raw real-mode guest that reports READY and STARTED on the isol
# channel, then writes "y\n" to stdout forever, 512 bytes per `rep outsb` (a `yes`).
# Between batches it reads the SIGNAL register: a forwarded signal makes it report
# Signaled(sig), as the init does when the workload dies of it. Only --timeout or a
# signal ends it; with isol's stdout stalled, that is what tests/vm_wedge.rs checks.
    .code16
    .ascii "ISOLRAW1"
    .quad 0
_start:
    mov $0xee3, %dx
    mov $1, %al             # EVENT_READY
    outb %al, %dx
    mov $2, %al             # EVENT_STARTED
    outb %al, %dx
    cld
    mov $buf, %di
    mov $256, %cx
    mov $0x0a79, %ax        # "y\n"
    rep stosw
flood:
    mov $0xee8, %dx         # SIGNAL (reading clears it)
    inl %dx, %eax
    test %eax, %eax
    jnz signaled
    mov $buf, %si
    mov $512, %cx
    mov $0xee0, %dx         # STDOUT
    rep outsb
    jmp flood
signaled:
    and $0xff, %eax
    or $0x02000000, %eax    # EXIT: signaled(sig)
    mov $0xeec, %dx
    outl %eax, %dx
1:  hlt
    jmp 1b
buf:
    .skip 512
