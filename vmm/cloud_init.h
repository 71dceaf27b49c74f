// The cloud-init NoCloud seed (--cloud-init): an ISO 9660 volume labelled
// "cidata" with the files cloud-init's NoCloud datasource looks for in its
// root: user-data, meta-data and, when given, network-config. The VMM makes
// it itself (vmm/iso9660.h) and the machine attaches it as a read-only
// virtio-scsi CD-ROM; cloud-init in the guest finds it by its label.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "virtio/scsi.h"
#include "vmm/config.h"
#include "vmm/core/fd.h"

namespace vmm {

inline constexpr const char* kCloudInitLabel = "cidata";

// The meta-data written when --cloud-init has no meta-data=:
//   instance-id: iid-<the --uuid, lower case>, or without --uuid iid- and
//                16 hex digits of a hash of the user-data (and network-config),
//                so the instance stays the same as long as the seed does;
//   local-hostname: vmm
// cloud-init runs its once-per-instance modules again when the instance-id
// changes.
std::string default_cloud_init_meta_data(const VmConfig& cfg, std::span<const uint8_t> user_data,
                                         std::span<const uint8_t> network_config);

// The seed image: reads the files cfg.cloud_init names (at most
// check::kMaxCloudInitFile bytes each; errors name the option, as
// "--cloud-init user-data=PATH: ..."). Every date in the volume is the
// newest modification time of those files, so the same files give the same
// bytes. cfg.cloud_init must be set.
std::vector<uint8_t> make_cloud_init_image(const VmConfig& cfg);

// The seed as a sealed memfd (no writes, no resizing), ready for
// virtio::DiskOptions::file: the guest reads it as a CD-ROM, nothing lands
// on the host's disk.
Fd make_cloud_init_seed(const VmConfig& cfg);

// The seed as a LUN of the virtio-scsi controller: a read-only CD-ROM at
// `lun` backed by make_cloud_init_seed(cfg). To give it the lowest free LUN
// after the configured ones, append kCloudInitLunConfig to a copy of
// cfg.scsi for check::scsi_luns and take the last LUN it returns.
virtio::ScsiLunSpec cloud_init_lun(const VmConfig& cfg, uint32_t lun);
inline const ScsiLunConfig kCloudInitLunConfig{.path = "", .lun = -1, .readonly = true, .cdrom = true};

}  // namespace vmm
