/* A workload that tries to reach the isol channel's I/O ports (0x0ee0-0x0eff) the only
 * ways user space can: ioperm(2) for the range and iopl(2). Prints each result; a workload
 * that got either could forge its exit report. Built static by tests/vm_run.rs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/io.h>

int main(void) {
    int a = ioperm(0xee0, 32, 1);
    int ea = errno;
    int b = iopl(3);
    int eb = errno;
    printf("ioperm=%d %s\niopl=%d %s\n", a, a ? strerror(ea) : "granted", b,
           b ? strerror(eb) : "granted");
    return 0;
}
