/*
 * Preloaded into Linux 6.12's user-mode kernel (lab/umlkernel.py) on hosts
 * whose XSAVE area is larger than the kernel's own buffer for it.
 *
 * The user-mode kernel saves and restores each of its processes' extended
 * registers with PTRACE_GETREGSET / PTRACE_SETREGSET (NT_X86_XSTATE) and a
 * buffer of a size fixed when it was built. The host truncates a GET to the
 * buffer, but refuses (EFAULT) a SET whose length is not its whole XSAVE
 * area: on a CPU with AMX that area is 11008 bytes, the buffer is smaller,
 * and every process of the node dies of SIGSEGV ("ptrace set fp regs failed,
 * errno = 14").
 *
 * Here a SET shorter than the host's area is sent as the whole area: the
 * kernel's bytes, then zeros. The bytes past the buffer belong to the AMX
 * tile state, which no process of a node can have used: the host gives it
 * only to a process that asked for it (arch_prctl ARCH_REQ_XCOMP_PERM), and
 * the user-mode kernel does not pass that request on. Every other request
 * goes to the C library's ptrace unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Larger than any XSAVE area so far (11008 bytes with AMX). */
#define AREA_MAX 65536

typedef long (*ptrace_fn)(enum __ptrace_request, pid_t, void *, void *);

/* Static, not on the stack: the kernel's threads run on small stacks. */
static unsigned char whole[AREA_MAX];
static unsigned char probe[AREA_MAX];
static size_t host_size;

long ptrace(enum __ptrace_request request, ...)
{
	static ptrace_fn real;
	va_list args;
	pid_t pid;
	void *addr, *data;

	va_start(args, request);
	pid = va_arg(args, pid_t);
	addr = va_arg(args, void *);
	data = va_arg(args, void *);
	va_end(args);
	if (!real)
		real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");

	if (request == PTRACE_SETREGSET && (unsigned long)addr == NT_X86_XSTATE) {
		struct iovec *given = data;

		if (!host_size) {
			/* The host says its size: a GET sets iov_len to it. */
			struct iovec asked = { probe, sizeof(probe) };

			if (real(PTRACE_GETREGSET, pid, addr, &asked) == 0)
				host_size = asked.iov_len;
		}
		if (given->iov_len < host_size && host_size <= sizeof(whole)) {
			struct iovec sent = { whole, host_size };

			memcpy(whole, given->iov_base, given->iov_len);
			memset(whole + given->iov_len, 0, host_size - given->iov_len);
			return real(request, pid, addr, &sent);
		}
	}
	return real(request, pid, addr, data);
}
