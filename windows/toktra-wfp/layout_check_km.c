/* Compiled (never run) by scripts/windows-build-driver: pins the kernel structures
 * declared by hand in src/kernel.rs and src/wfp.rs against mingw-w64's DDK headers. */
#include <ddk/ntddk.h>

#include <stddef.h>

#define PIN(c) _Static_assert(c, #c)
PIN(offsetof(DRIVER_OBJECT, DriverName) == 56);
PIN(offsetof(DRIVER_OBJECT, DriverUnload) == 104);
PIN(offsetof(DRIVER_OBJECT, MajorFunction) == 112);
PIN(offsetof(IRP, AssociatedIrp.SystemBuffer) == 24);
PIN(offsetof(IRP, IoStatus.Status) == 48);
PIN(offsetof(IRP, IoStatus.Information) == 56);
PIN(offsetof(IRP, Tail.Overlay.CurrentStackLocation) == 184);
PIN(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.OutputBufferLength) == 8);
PIN(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.InputBufferLength) == 16);
PIN(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.IoControlCode) == 24);
PIN(sizeof(MDL) == 48);
PIN(offsetof(MDL, MdlFlags) == 10);
PIN(offsetof(MDL, MappedSystemVa) == 24);
PIN(offsetof(MDL, StartVa) == 32);
PIN(offsetof(MDL, ByteCount) == 40);
PIN(offsetof(MDL, ByteOffset) == 44);
PIN(MDL_MAPPED_TO_SYSTEM_VA == 1 && MDL_SOURCE_IS_NONPAGED_POOL == 4);
