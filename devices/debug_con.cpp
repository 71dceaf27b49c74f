#include "devices/debug_con.h"

namespace vmm::devices {

DebugCon::DebugCon(std::function<void(const std::string& line)> on_line) : on_line_(std::move(on_line)) {}

void DebugCon::read(uint64_t offset, std::span<uint8_t> data) {
    for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i == 0 ? kReadback : 0xff;
}

void DebugCon::write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        if (offset + i != 0) continue;  // a wider access: only its first byte is the port
        char c = static_cast<char>(data[i]);
        if (c == '\r') continue;
        if (c != '\n') line_.push_back(c);
        if (c == '\n' || line_.size() >= kMaxLine) {
            if (on_line_) on_line_(line_);
            line_.clear();
        }
    }
}

}  // namespace vmm::devices
