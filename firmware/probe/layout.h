/* Shared by entry.S and the C code: how much the identity map covers. */
#pragma once
/* GiB identity-mapped in 2 MiB pages by entry.S: RAM, the 32-bit PCI hole
 * and 64-bit BARs placed just above 4 GiB. Each GiB costs 512 page-table
 * writes in ring 0, which is emulated (slow) on a nested KVM. */
#define PROBE_MAP_GIB 8
