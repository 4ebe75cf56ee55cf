# hello-pvh: the tiny PVH guest of the VMM-cost benchmark (issue 6).
# An ELF64 file whose XEN_ELFNOTE_PHYS32_ENTRY note points at 32-bit code: it writes one
# line to the 16550 at 0x3f8, asks the i8042 for a CPU reset (out 0x64, 0xFE), and if that
# does nothing (QEMU microvm has no i8042) triple-faults: an empty IDT plus ud2.
# Booted identically by `isol boot` and `qemu-system-x86_64 -M microvm -kernel`.

    .section .note.Xen, "a"
    .balign 4
    .long 4                 # namesz: "Xen\0"
    .long 4                 # descsz
    .long 18                # XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .long _entry
    .balign 4

    .text
    .code32
    .globl _entry
_entry:
    mov $msg, %esi
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
