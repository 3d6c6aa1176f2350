/*
 * TEST SCAFFOLDING ONLY - never shipped.
 *
 * Rust's std (1.78+) fills its random state through ProcessPrng from
 * bcryptprimitives.dll. Wine 8 has no such export, so every Rust program dies at its
 * first HashMap. This DLL stands in for bcryptprimitives.dll inside a test Wine prefix
 * (WINEDLLOVERRIDES="bcryptprimitives=n") and forwards to RtlGenRandom, which Wine has.
 * Real Windows (10 and later) has ProcessPrng and never loads this.
 */
#include <windows.h>

/* RtlGenRandom is exported by advapi32 under this name. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    /* Like the real ProcessPrng: it cannot fail. */
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
