# status: writes the byte 42 to port 0x600 (a device the test adds through
# Machine::add_pio_device, which stops the machine), then spins.
    .include "common.inc"
    .text
main:
    mov $42, %al
    mov $0x600, %dx
    outb %al, %dx
1:  jmp 1b
