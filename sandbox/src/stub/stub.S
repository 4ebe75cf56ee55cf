# isol's exec stub: a flat static x86_64 ELF, assembled by `sh stub.sh` into the bytes of
# stub.rs. Run from a sealed memfd by the workload process (isol-sandbox `stub`), so that
# the process that performs the workload's execve never has a host binary as its
# /proc/self/exe (CVE-2019-5736: `#!/proc/self/exe` or /proc/PID/exe reach only this).
#
# argv: CANDIDATE... "" ARG0 ARG1...   (the empty string separates the PATH candidates
#       from the workload's own argv); envp: the workload's environment.
# fd 3: the report pipe, open without close-on-exec; the stub marks it close-on-exec.
# It tries execve(CANDIDATE, ARGV, envp) in order like execvp: ENOENT, ENOTDIR, ESTALE,
# ENODEV, ETIMEDOUT go on, EACCES goes on and is remembered (it wins at the end), any
# other errno stops. Then it writes isol-sandbox's Report::Exec(errno) to fd 3
# ('E', errno as i32 LE, text length 0 as u16 LE) and exits 127.

    .intel_syntax noprefix
    .set BASE, 0x400000
    .globl _start
    .text
ehdr:
    .byte 0x7f, 'E', 'L', 'F', 2, 1, 1, 0     # ELFCLASS64, LSB, version 1, SysV
    .quad 0
    .short 2                                  # ET_EXEC
    .short 62                                 # EM_X86_64
    .long 1                                   # EV_CURRENT
    .quad BASE + (_start - ehdr)              # e_entry
    .quad phdr - ehdr                         # e_phoff
    .quad 0                                   # e_shoff
    .long 0                                   # e_flags
    .short 64                                 # e_ehsize
    .short 56                                 # e_phentsize
    .short 1                                  # e_phnum
    .short 0, 0, 0                            # no section headers
phdr:
    .long 1                                   # PT_LOAD
    .long 5                                   # PF_R | PF_X
    .quad 0                                   # p_offset
    .quad BASE                                # p_vaddr
    .quad BASE                                # p_paddr
    .quad end - ehdr                          # p_filesz
    .quad end - ehdr                          # p_memsz
    .quad 0x1000                              # p_align

_start:
    mov r13, rsp
    mov r12, [r13]                # argc
    add r13, 8                    # r13 = argv
    lea r14, [r13 + r12*8 + 8]    # r14 = envp
    mov eax, 72                   # fcntl(3, F_SETFD, FD_CLOEXEC)
    mov edi, 3
    mov esi, 2
    mov edx, 1
    syscall
    mov ebx, 2                    # ebx = errno to report (ENOENT if nothing was tried)
    mov r15, r13                  # find the "" separator
find:
    mov rax, [r15]
    test rax, rax
    jz report                     # no separator: nothing to run
    cmp byte ptr [rax], 0
    je found
    add r15, 8
    jmp find
found:
    lea rbp, [r15 + 8]            # rbp = the workload's argv
    xor r12d, r12d                # r12d = saw EACCES
    mov r15, r13                  # r15 = the next candidate
try:
    mov rdi, [r15]
    cmp byte ptr [rdi], 0
    je tried                      # reached the separator
    mov eax, 59                   # execve(candidate, argv, envp)
    mov rsi, rbp
    mov rdx, r14
    syscall
    neg eax
    mov ebx, eax
    add r15, 8
    cmp eax, 13                   # EACCES
    jne 1f
    mov r12d, 1
    jmp try
1:  cmp eax, 2                    # ENOENT
    je try
    cmp eax, 20                   # ENOTDIR
    je try
    cmp eax, 116                  # ESTALE
    je try
    cmp eax, 19                   # ENODEV
    je try
    cmp eax, 110                  # ETIMEDOUT
    je try
    jmp report                    # any other errno ends the search
tried:
    test r12d, r12d
    jz report
    mov ebx, 13                   # EACCES wins over "not there"
report:
    sub rsp, 16
    mov byte ptr [rsp], 'E'
    mov [rsp + 1], ebx
    mov word ptr [rsp + 5], 0
    mov eax, 1                    # write(3, msg, 7)
    mov edi, 3
    mov rsi, rsp
    mov edx, 7
    syscall
    mov eax, 231                  # exit_group(127)
    mov edi, 127
    syscall
end:
