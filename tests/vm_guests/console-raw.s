# console-raw: a tiny isol raw real-mode guest that reports READY and STARTED on the isol
# channel, then writes to the serial console (COM1 THR, port 0x3f8) forever, 512 bytes
# per `rep outsb`: an endless console writer. Only --timeout (or a signal) ends it; the
# console log must stay capped meanwhile (tests/vm_wedge.rs).
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
    mov $0x0a6b, %ax        # "k\n"
    rep stosw
spam:
    mov $buf, %si
    mov $512, %cx
    mov $0x3f8, %dx         # COM1 THR
    rep outsb
    jmp spam
buf:
    .skip 512
