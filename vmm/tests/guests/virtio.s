# virtio: drives the virtio-mmio device in slot 0 (0xd0000000) the way a driver does:
# checks MagicValue, Version, DeviceID 9, negotiates VERSION_1 + MOUNT_TAG, sets up queue 0
# (16 entries, rings at 2 MiB), sends one request ("ping from guest", gathered from two
# buffers) with two writable buffers, notifies, and prints what came back:
#   "virt tag=<mount tag> reply=<reply>\n", then resets. Prints BAD on any mismatch.
# Interrupts stay off (IF=0, IOAPIC pins masked): the guest polls InterruptStatus, which
# the VMM sets once the used ring is written (by its worker thread, or during the
# QueueNotify write when there is no ioeventfd).
    .include "common.inc"
    .text
    .set MMIO, 0xd0000000
    .set DESC, 0x200000
    .set AVAIL, 0x201000
    .set USED, 0x202000
    .set REPLY, 0x203000
main:
    mov $MMIO, %ebx
    mov (%ebx), %eax                # MagicValue: "virt"
    mov %eax, magic
    cmpl $2, 0x4(%ebx)              # Version
    jne fail
    cmpl $9, 0x8(%ebx)              # DeviceID: 9P
    jne fail
    movl $1, 0x70(%ebx)             # Status: ACKNOWLEDGE
    movl $3, 0x70(%ebx)             # | DRIVER
    movl $1, 0x24(%ebx)             # DriverFeaturesSel 1
    movl $1, 0x20(%ebx)             # VIRTIO_F_VERSION_1 (bit 32)
    movl $0, 0x24(%ebx)             # DriverFeaturesSel 0
    movl $1, 0x20(%ebx)             # VIRTIO_9P_MOUNT_TAG
    movl $11, 0x70(%ebx)            # | FEATURES_OK
    testl $8, 0x70(%ebx)
    jz fail
    movl $0, 0x30(%ebx)             # QueueSel 0
    cmpl $0, 0x34(%ebx)             # QueueNumMax
    je fail
    movl $16, 0x38(%ebx)            # QueueNum
    movl $DESC, 0x80(%ebx)
    movl $0, 0x84(%ebx)
    movl $AVAIL, 0x90(%ebx)
    movl $0, 0x94(%ebx)
    movl $USED, 0xa0(%ebx)
    movl $0, 0xa4(%ebx)
    movl $1, 0x44(%ebx)             # QueueReady
    cmpl $1, 0x44(%ebx)
    jne fail
    movl $15, 0x70(%ebx)            # | DRIVER_OK

    # The mount tag from config space: le16 length at 0x100, bytes from 0x102.
    movzwl 0x100(%ebx), %ecx
    cmp $32, %ecx
    ja fail
    lea 0x102(%ebx), %esi
    mov $tag, %edi
1:  test %ecx, %ecx
    jz 2f
    movb (%esi), %al
    movb %al, (%edi)
    inc %esi
    inc %edi
    dec %ecx
    jmp 1b
2:  movb $0, (%edi)

    # Chain 0 -> 1 -> 2: two readable pieces of the request, then writable 4 + 60 bytes.
    movl $req1, DESC+0x00
    movl $5, DESC+0x08
    movw $1, DESC+0x0c              # NEXT
    movw $1, DESC+0x0e
    movl $req2, DESC+0x10
    movl $(req_end - req2), DESC+0x18
    movw $1, DESC+0x1c              # NEXT
    movw $2, DESC+0x1e
    movl $REPLY, DESC+0x20
    movl $4, DESC+0x28
    movw $3, DESC+0x2c              # WRITE | NEXT
    movw $3, DESC+0x2e
    movl $(REPLY + 4), DESC+0x30
    movl $60, DESC+0x38
    movw $2, DESC+0x3c              # WRITE
    movw $0, AVAIL+4                # ring[0] = head 0
    movw $1, AVAIL+2                # idx = 1
    movl $0, 0x50(%ebx)             # QueueNotify 0

    # The VMM's worker serves the queue, then sets InterruptStatus: wait for it (each
    # read is a VM exit; a million is seconds, far beyond a served request).
    mov $1000000, %ecx
3:  testl $1, 0x60(%ebx)            # InterruptStatus: used buffer
    jnz 4f
    dec %ecx
    jz fail
    jmp 3b
4:  cmpw $1, USED+2                 # used idx
    jne fail
    cmpl $0, USED+4                 # used[0].id
    jne fail
    mov USED+8, %ecx                # used[0].len
    cmp $64, %ecx
    ja fail
    movb $0, REPLY(%ecx)
    movl $1, 0x64(%ebx)             # InterruptACK
    testl $1, 0x60(%ebx)
    jnz fail

    mov $magic, %esi
    call puts
    mov $tag_msg, %esi
    call puts
    mov $tag, %esi
    call puts
    mov $reply_msg, %esi
    call puts
    mov $REPLY, %esi
    call puts
    mov $nl, %esi
    call puts
    jmp reset

    .data
magic:
    .long 0
    .byte 0
tag_msg:
    .asciz " tag="
reply_msg:
    .asciz " reply="
nl:
    .asciz "\n"
req1:
    .ascii "ping "
req2:
    .ascii "from guest"
req_end:
tag:
    .fill 33, 1, 0
