/* Compiled (never run) by scripts/windows-build-driver: pins the hand-written WFP
 * management types of src/wfp.rs against mingw-w64's fwpmtypes.h. The numbers are the
 * same as the Rust `const _: () = { assert!(...) }` block; if either side moves, the
 * build fails. */
#include <windows.h>
#include <fwpmtypes.h>
#include <stddef.h>

#define PIN(c) _Static_assert(c, #c)
PIN(sizeof(FWP_BYTE_BLOB) == 16 && offsetof(FWP_BYTE_BLOB, data) == 8);
PIN(sizeof(FWP_VALUE0) == 16 && offsetof(FWP_VALUE0, uint8) == 8);
PIN(sizeof(FWP_CONDITION_VALUE0) == 16);
PIN(sizeof(FWPM_DISPLAY_DATA0) == 16);
PIN(sizeof(FWPM_SESSION0) == 72);
PIN(offsetof(FWPM_SESSION0, flags) == 32);
PIN(offsetof(FWPM_SESSION0, processId) == 40);
PIN(offsetof(FWPM_SESSION0, sid) == 48);
PIN(offsetof(FWPM_SESSION0, kernelMode) == 64);
PIN(sizeof(FWPM_PROVIDER0) == 64);
PIN(offsetof(FWPM_PROVIDER0, providerData) == 40);
PIN(offsetof(FWPM_PROVIDER0, serviceName) == 56);
PIN(sizeof(FWPM_SUBLAYER0) == 72);
PIN(offsetof(FWPM_SUBLAYER0, flags) == 32);
PIN(offsetof(FWPM_SUBLAYER0, providerKey) == 40);
PIN(offsetof(FWPM_SUBLAYER0, weight) == 64);
PIN(sizeof(FWPM_CALLOUT0) == 88);
PIN(offsetof(FWPM_CALLOUT0, providerKey) == 40);
PIN(offsetof(FWPM_CALLOUT0, applicableLayer) == 64);
PIN(offsetof(FWPM_CALLOUT0, calloutId) == 80);
PIN(sizeof(FWPM_ACTION0) == 20);
PIN(sizeof(FWPM_FILTER_CONDITION0) == 40);
PIN(offsetof(FWPM_FILTER_CONDITION0, matchType) == 16);
PIN(offsetof(FWPM_FILTER_CONDITION0, conditionValue) == 24);
PIN(sizeof(FWPM_FILTER0) == 200);
PIN(offsetof(FWPM_FILTER0, flags) == 32);
PIN(offsetof(FWPM_FILTER0, providerKey) == 40);
PIN(offsetof(FWPM_FILTER0, providerData) == 48);
PIN(offsetof(FWPM_FILTER0, layerKey) == 64);
PIN(offsetof(FWPM_FILTER0, subLayerKey) == 80);
PIN(offsetof(FWPM_FILTER0, weight) == 96);
PIN(offsetof(FWPM_FILTER0, numFilterConditions) == 112);
PIN(offsetof(FWPM_FILTER0, filterCondition) == 120);
PIN(offsetof(FWPM_FILTER0, action) == 128);
PIN(offsetof(FWPM_FILTER0, rawContext) == 152);
PIN(offsetof(FWPM_FILTER0, reserved) == 168);
PIN(offsetof(FWPM_FILTER0, filterId) == 176);
PIN(offsetof(FWPM_FILTER0, effectiveWeight) == 184);
PIN(FWP_ACTION_CALLOUT_INSPECTION == 0x6004);
PIN(FWP_ACTION_CONTINUE == 0x2006);
PIN(FWP_BYTE_ARRAY16_TYPE == 11 && FWP_TOKEN_ACCESS_INFORMATION_TYPE == 16 && FWP_SID == 13);
