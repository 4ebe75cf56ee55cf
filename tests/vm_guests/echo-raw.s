# echo-raw: a tiny isol raw real-mode guest that speaks the isol channel (ports 0xee0+,
# see vmm/src/channel/protocol.rs) like the guest init does, so VM mode's host side
# (channel device, stdin pump, exit mapping, console, run directory) is tested on any
# /dev/kvm, PVM included, without a Linux guest. It checks MAGIC, reports READY and
# STARTED, writes "out\n" to stdout and "err\n" to stderr, copies stdin to stdout until
# EOF, then reports exit(7).
    .code16
    .ascii "ISOLRAW1"
    .quad 0
_start:
    mov $0xee3, %dx
    inb %dx, %al
    cmp $0x5a, %al
    jne fail
    mov $1, %al             # EVENT_READY
    outb %al, %dx
    mov $2, %al             # EVENT_STARTED
    outb %al, %dx
    cld
    mov $msg_out, %si
    mov $4, %cx
    mov $0xee0, %dx
    rep outsb
    mov $msg_err, %si
    mov $4, %cx
    mov $0xee1, %dx
    rep outsb
copy:
    mov $0xee4, %dx         # STDIN status
    inl %dx, %eax
    cmp $0xffffffff, %eax
    je done
    test %eax, %eax
    jz copy
    cmp $512, %eax
    jbe 1f
    mov $512, %eax
1:  mov %ax, %bx
    mov %ax, %cx
    mov $buf, %di
    mov $0xee2, %dx         # STDIN data
    rep insb
    mov %bx, %cx
    mov $buf, %si
    mov $0xee0, %dx         # STDOUT
    rep outsb
    jmp copy
done:
    mov $0xeec, %dx         # EXIT: exited(7)
    mov $0x01000007, %eax
    outl %eax, %dx
2:  hlt
    jmp 2b
fail:
    mov $0xfe, %al
    outb %al, $0x64
3:  hlt
    jmp 3b

msg_out:
    .ascii "out\n"
msg_err:
    .ascii "err\n"
buf:
    .skip 512
