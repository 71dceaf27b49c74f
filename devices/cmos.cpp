#include "devices/cmos.h"

#include <ctime>

#include <algorithm>
#include <chrono>

#include "vmm/core/bytes.h"

namespace vmm::devices {
namespace {

constexpr uint8_t kSec = 0x00;
constexpr uint8_t kMin = 0x02;
constexpr uint8_t kHour = 0x04;
constexpr uint8_t kWeekday = 0x06;
constexpr uint8_t kDay = 0x07;
constexpr uint8_t kMonth = 0x08;
constexpr uint8_t kYear = 0x09;
constexpr uint8_t kRegA = 0x0a;
constexpr uint8_t kRegB = 0x0b;
constexpr uint8_t kRegC = 0x0c;
constexpr uint8_t kRegD = 0x0d;
constexpr uint8_t kCentury = 0x32;

constexpr uint8_t kAlarmSec = 0x01;
constexpr uint8_t kAlarmMin = 0x03;
constexpr uint8_t kAlarmHour = 0x05;

constexpr uint8_t kRegASelect = 0x0f;  // RS: periodic rate
constexpr uint8_t kRegADivider = 0x70; // DV
constexpr uint8_t kRegADividerOn = 0x20;
constexpr uint8_t kRegBSet = 0x80;  // freeze updates while the guest sets the time
constexpr uint8_t kRegBPie = 0x40;
constexpr uint8_t kRegBAie = 0x20;
constexpr uint8_t kRegBUie = 0x10;
constexpr uint8_t kRegBDm = 0x04;   // data mode: 1 = binary, 0 = BCD
constexpr uint8_t kRegB24h = 0x02;  // 1 = 24-hour mode
constexpr uint8_t kRegDVrt = 0x80;  // valid RAM and time
constexpr uint8_t kRegCIrqf = 0x80;
constexpr uint8_t kRegCPf = 0x40;
constexpr uint8_t kRegCAf = 0x20;
constexpr uint8_t kRegCUf = 0x10;

constexpr int64_t kNsPerSec = 1'000'000'000;
// How far past a second's start the update is looked at, so that a timer
// that fires right on the boundary sees the new second.
constexpr int64_t kUpdateSlackNs = 1'000;
// The alarm is checked against at most this many missed seconds (a day:
// every time of day once).
constexpr int64_t kMaxAlarmScan = 86400;

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * KiB;

// 0001-01-01 .. 9999-12-31, the range the century + year registers express.
constexpr int64_t kMinTime = -62135596800;
constexpr int64_t kMaxTime = 253402300799;

bool is_time_register(uint8_t idx) {
    switch (idx) {
        case kSec: case kMin: case kHour: case kWeekday: case kDay: case kMonth: case kYear: case kCentury:
            return true;
        default:
            return false;
    }
}

struct Civil {
    int64_t year;
    unsigned month, day, hour, minute, second, weekday;  // weekday: 1 = Sunday
};

Civil to_civil(int64_t t) {
    using namespace std::chrono;
    t = std::clamp(t, kMinTime, kMaxTime);
    int64_t d = t / 86400, r = t % 86400;
    if (r < 0) {
        r += 86400;
        --d;
    }
    sys_days sd{days{d}};
    year_month_day ymd{sd};
    Civil c{};
    c.year = int(ymd.year());
    c.month = unsigned(ymd.month());
    c.day = unsigned(ymd.day());
    c.weekday = weekday{sd}.c_encoding() + 1;
    c.hour = unsigned(r / 3600);
    c.minute = unsigned(r / 60 % 60);
    c.second = unsigned(r % 60);
    return c;
}

// Returns false for an impossible date or time (e.g. February 30).
bool from_civil(const Civil& c, int64_t& out) {
    using namespace std::chrono;
    if (c.hour > 23 || c.minute > 59 || c.second > 59) return false;
    year_month_day ymd{year{int(c.year)}, month{c.month}, day{c.day}};
    if (!ymd.ok()) return false;
    int64_t d = sys_days{ymd}.time_since_epoch().count();
    out = d * 86400 + c.hour * 3600 + c.minute * 60 + c.second;
    return true;
}

int64_t realtime_ns() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

}  // namespace

std::function<int64_t()> Cmos::host_clock(bool localtime) {
    if (!localtime) return realtime_ns;
    ::tzset();
    return [] {
        const int64_t ns = realtime_ns();
        const time_t t = static_cast<time_t>(floor_div(ns, kNsPerSec));
        struct tm tm {};
        if (!::localtime_r(&t, &tm)) return ns;
        return ns + int64_t(tm.tm_gmtoff) * kNsPerSec;  // seconds east of UTC, DST included
    };
}

int64_t Cmos::monotonic_ns() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

Cmos::Cmos(uint64_t mem_below_4g, uint64_t mem_above_4g, Clock clock, std::shared_ptr<vmm::IrqLine> irq)
    : clock_(std::move(clock)), irq_(std::move(irq)) {
    if (!clock_.wall_ns) clock_.wall_ns = realtime_ns;
    if (!clock_.mono_ns) clock_.mono_ns = monotonic_ns;
    ram_[kRegA] = 0x26;      // 32.768 kHz time base, 1024 Hz periodic rate
    ram_[kRegB] = kRegB24h;  // BCD, 24-hour, no interrupts
    ram_[kRegD] = kRegDVrt;

    // Memory size bytes, laid out as PC BIOSes (and QEMU for SeaBIOS) do.
    // Base memory in KiB (the first 640 KiB).
    store_le16(ram_, 0x15, static_cast<uint16_t>(std::min<uint64_t>(mem_below_4g / KiB, 640)));
    // Extended memory above 1 MiB in KiB: the 16-bit field covers about the
    // next 64 MiB, so larger guests saturate at 0xffff.
    uint64_t ext = mem_below_4g > MiB ? std::min<uint64_t>((mem_below_4g - MiB) / KiB, 0xffff) : 0;
    store_le16(ram_, 0x17, static_cast<uint16_t>(ext));
    store_le16(ram_, 0x30, static_cast<uint16_t>(ext));
    // Memory between 16 MiB and 4 GiB in 64 KiB units.
    uint64_t mid = mem_below_4g > 16 * MiB ? std::min<uint64_t>((mem_below_4g - 16 * MiB) / (64 * KiB), 0xffff) : 0;
    store_le16(ram_, 0x34, static_cast<uint16_t>(mid));
    // Memory above 4 GiB in 64 KiB units, 24 bits.
    uint64_t high = std::min<uint64_t>(mem_above_4g / (64 * KiB), 0xffffff);
    store_le(ram_, 0x5b, 3, high);
    set_byte(0x10, ram_[0x10]);  // computes the standard checksum
    std::lock_guard lk(mu_);
    restart_periodic(clock_.mono_ns());
    resync_updates();
}

void Cmos::set_byte(uint8_t index, uint8_t value) {
    std::lock_guard lk(mu_);
    index &= 0x7f;
    ram_[index] = value;
    // The AT BIOS checksum over 0x10..0x2d lives in 0x2e (high) / 0x2f (low).
    if (index >= 0x10 && index <= 0x2d) {
        unsigned sum = 0;
        for (unsigned i = 0x10; i <= 0x2d; ++i) sum += ram_[i];
        store_be16(ram_, 0x2e, static_cast<uint16_t>(sum));
    }
}

bool Cmos::nmi_masked() const {
    std::lock_guard lk(mu_);
    return nmi_masked_;
}

void Cmos::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        // The index port is write-only on a PC; offsets past 1 are not ours.
        data[i] = offset + i == 1 ? read_data() : 0xff;
    }
}

void Cmos::write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        uint64_t off = offset + i;
        if (off == 0) {
            nmi_masked_ = data[i] & 0x80;
            index_ = data[i] & 0x7f;
        } else if (off == 1) {
            write_data(data[i]);
        }
    }
}

// Clamped to what the registers express (years 1..9999). Seconds, not
// nanoseconds: a guest may set year 9999, far past what int64_t holds in
// nanoseconds (year 2262).
int64_t Cmos::rtc_now() const {
    return std::clamp(floor_div(clock_.wall_ns(), kNsPerSec) + offset_, kMinTime, kMaxTime);
}

// How far into its current second the RTC is: the guest's offset is whole
// seconds, so that is the host clock's.
int64_t Cmos::rtc_subsecond_ns() const {
    const int64_t host = clock_.wall_ns();
    return host - floor_div(host, kNsPerSec) * kNsPerSec;
}

uint8_t Cmos::encode(unsigned v) const {
    if (ram_[kRegB] & kRegBDm) return uint8_t(v);
    return uint8_t((v / 10 % 10) << 4 | v % 10);
}

int Cmos::decode(uint8_t v) const {
    if (ram_[kRegB] & kRegBDm) return v;
    unsigned hi = v >> 4, lo = v & 0x0f;
    if (hi > 9 || lo > 9) return -1;
    return int(hi * 10 + lo);
}

uint8_t Cmos::encode_hour(unsigned h) const {
    if (ram_[kRegB] & kRegB24h) return encode(h);
    unsigned h12 = h % 12 == 0 ? 12 : h % 12;
    return uint8_t(encode(h12) | (h >= 12 ? 0x80 : 0));
}

int Cmos::decode_hour(uint8_t v) const {
    if (ram_[kRegB] & kRegB24h) return decode(v);
    int h12 = decode(v & 0x7f);
    if (h12 < 1 || h12 > 12) return -1;
    return h12 % 12 + ((v & 0x80) ? 12 : 0);
}

void Cmos::freeze_into_ram() {
    Civil c = to_civil(rtc_now());
    ram_[kSec] = encode(c.second);
    ram_[kMin] = encode(c.minute);
    ram_[kHour] = encode_hour(c.hour);
    ram_[kWeekday] = encode(c.weekday);
    ram_[kDay] = encode(c.day);
    ram_[kMonth] = encode(c.month);
    ram_[kYear] = encode(unsigned(c.year % 100));
    ram_[kCentury] = encode(unsigned(c.year / 100));
}

void Cmos::commit_from_ram() {
    int sec = decode(ram_[kSec]), min = decode(ram_[kMin]), hour = decode_hour(ram_[kHour]);
    int day = decode(ram_[kDay]), month = decode(ram_[kMonth]);
    int year = decode(ram_[kYear]), century = decode(ram_[kCentury]);
    int64_t t = 0;
    bool ok = sec >= 0 && min >= 0 && hour >= 0 && day >= 0 && month >= 0 && year >= 0 && year <= 99 &&
              century >= 0 && century <= 99 &&
              from_civil(Civil{century * 100 + year, unsigned(month), unsigned(day), unsigned(hour), unsigned(min),
                               unsigned(sec), 0},
                         t);
    if (!ok) {
        if (log_limit_.allow()) vmm::log::debug("cmos: guest wrote an invalid RTC time; ignored");
        return;
    }
    offset_ = t - floor_div(clock_.wall_ns(), kNsPerSec);
    resync_updates();  // a new time is no update: no UF or AF for the jump
}

uint8_t Cmos::read_data() {
    uint8_t idx = index_;
    switch (idx) {
        case kRegA: return ram_[kRegA] & 0x7f;  // UIP: never mid-update
        case kRegC: {
            // Read-to-clear: every flag, and with IRQF the line.
            const int64_t now = clock_.mono_ns();
            advance(now);
            const uint8_t v = flags_;
            flags_ = 0;
            update_irq();
            rearm(now);
            return v;
        }
        case kRegD: return kRegDVrt;
        default: break;
    }
    if (!is_time_register(idx) || (ram_[kRegB] & kRegBSet)) return ram_[idx];
    Civil c = to_civil(rtc_now());
    switch (idx) {
        case kSec: return encode(c.second);
        case kMin: return encode(c.minute);
        case kHour: return encode_hour(c.hour);
        case kWeekday: return encode(c.weekday);
        case kDay: return encode(c.day);
        case kMonth: return encode(c.month);
        case kYear: return encode(unsigned(c.year % 100));
        case kCentury: return encode(unsigned(c.year / 100));
    }
    return ram_[idx];
}

void Cmos::write_data(uint8_t value) {
    uint8_t idx = index_;
    switch (idx) {
        case kRegA: {
            const int64_t now = clock_.mono_ns();
            advance(now);  // what happened at the old rate
            const uint8_t old = ram_[kRegA];
            ram_[kRegA] = value & 0x7f;  // UIP is read-only
            const bool was_running = (old & kRegADivider) == kRegADividerOn;
            if ((old ^ value) & (kRegADivider | kRegASelect)) restart_periodic(now);
            if (!was_running && running()) resync_updates();
            rearm(now);
            return;
        }
        case kRegB: {
            const int64_t now = clock_.mono_ns();
            advance(now);  // the flags up to now, under the old settings
            bool was_set = ram_[kRegB] & kRegBSet, set = value & kRegBSet;
            if (set) value &= uint8_t(~kRegBUie);  // SET clears UIE (datasheet)
            if (!was_set && set) freeze_into_ram();  // fields stop updating
            ram_[kRegB] = value;
            if (was_set && !set) commit_from_ram();  // the written time takes effect
            if (was_set != set) resync_updates();     // updates stop / restart from now
            update_irq();  // an enable for a flag already set raises IRQF now
            rearm(now);
            return;
        }
        case kRegC:
        case kRegD:
            return;  // read-only
        default:
            break;
    }
    if (is_time_register(idx) && !(ram_[kRegB] & kRegBSet)) {
        // One field changed on a running clock: take the current time, swap
        // in the new field and restart from there.
        freeze_into_ram();
        ram_[idx] = value;
        commit_from_ram();
        rearm(clock_.mono_ns());
        return;
    }
    ram_[idx] = value;
}

// ---------------------------------------------------------------------------
// Interrupts

bool Cmos::running() const { return (ram_[kRegA] & kRegADivider) == kRegADividerOn; }

int64_t Cmos::periodic_ticks() const {
    const unsigned rs = ram_[kRegA] & kRegASelect;
    if (rs == 0) return 0;
    if (rs <= 2) return int64_t{1} << (rs + 6);  // 1: 256 Hz = 128 ticks, 2: 128 Hz = 256 ticks
    return int64_t{1} << (rs - 1);               // 3: 8192 Hz = 4 ticks ... 15: 2 Hz
}

int64_t Cmos::periodic_after(int64_t t) const {
    // Edge k is at anchor + ceil(k * ticks * 1e9 / 32768): exact, no drift.
    const __int128 per = __int128(periodic_ticks()) * kNsPerSec;  // ns * 32768
    const __int128 since = t < periodic_anchor_ ? -1 : __int128(t - periodic_anchor_);
    const __int128 k = since < 0 ? 1 : since * 32768 / per + 1;
    return periodic_anchor_ + int64_t((k * per + 32767) / 32768);
}

void Cmos::restart_periodic(int64_t now) {
    periodic_anchor_ = now;
    periodic_next_ = periodic_ticks() ? periodic_after(now) : kNoDeadline;
}

void Cmos::resync_updates() { last_second_ = rtc_now(); }

bool Cmos::alarm_matches(int64_t t) const {
    const int64_t sod = t - floor_div(t, 86400) * 86400;
    const unsigned h = unsigned(sod / 3600), m = unsigned(sod / 60 % 60), sec = unsigned(sod % 60);
    auto match = [](uint8_t alarm, uint8_t now) { return (alarm & 0xc0) == 0xc0 || alarm == now; };
    return match(ram_[kAlarmSec], encode(sec)) && match(ram_[kAlarmMin], encode(m)) &&
           match(ram_[kAlarmHour], encode_hour(h));
}

void Cmos::advance(int64_t now) {
    if (!running()) {
        // The divider is held: no periodic edges, no updates.
        update_irq();
        return;
    }
    if (periodic_ticks() && now >= periodic_next_) {
        flags_ |= kRegCPf;
        periodic_next_ = periodic_after(now);  // late: one PF for all the edges missed
    }
    const int64_t sec = rtc_now();
    if (ram_[kRegB] & kRegBSet) {
        last_second_ = sec;  // no update cycles while SET
    } else if (sec > last_second_) {
        flags_ |= kRegCUf;
        if (!(flags_ & kRegCAf)) {
            // Every second the updates went through since the last look,
            // at most a day of them (each time of day once).
            for (int64_t s = std::max(last_second_ + 1, sec - kMaxAlarmScan + 1); s <= sec; ++s) {
                if (alarm_matches(s)) {
                    flags_ |= kRegCAf;
                    break;
                }
            }
        }
        last_second_ = sec;
    } else if (sec < last_second_) {
        last_second_ = sec;  // the host clock went back: wait for the next second
    }
    update_irq();
}

void Cmos::update_irq() {
    const bool irqf = flags_ & ram_[kRegB] & (kRegCPf | kRegCAf | kRegCUf);
    if (irqf) flags_ |= kRegCIrqf;
    else flags_ &= uint8_t(~kRegCIrqf);
    if (irqf != line_) {
        line_ = irqf;
        if (irq_) irq_->set_level(irqf);
    }
}

int64_t Cmos::deadline_locked(int64_t now) const {
    // Nothing can change what the guest sees until it reads register C
    // once IRQF is up, and flags it has not enabled are worked out when read.
    if ((flags_ & kRegCIrqf) || !running()) return kNoDeadline;
    const uint8_t b = ram_[kRegB];
    int64_t d = kNoDeadline;
    if ((b & kRegBPie) && periodic_ticks()) d = periodic_next_;
    if ((b & (kRegBUie | kRegBAie)) && !(b & kRegBSet)) {
        // The next update: the RTC's next second, in monotonic time.
        const int64_t into = rtc_subsecond_ns();
        d = std::min(d, now + (kNsPerSec - into) + kUpdateSlackNs);
    }
    return d;
}

void Cmos::rearm(int64_t now) {
    const int64_t d = deadline_locked(now);
    // A later deadline than the armed one may keep the armed one (the early
    // tick finds nothing and re-arms): one syscall saved per register C
    // read while the next second is computed afresh each time.
    if (d == armed_ || (d != kNoDeadline && armed_ != kNoDeadline && d > armed_ && d - armed_ < 100'000)) return;
    armed_ = d;
    if (arm_) arm_(d);
}

void Cmos::set_timer(std::function<void(int64_t)> arm) {
    std::lock_guard lk(mu_);
    arm_ = std::move(arm);
    armed_ = kNoDeadline;
    rearm(clock_.mono_ns());
}

void Cmos::tick() {
    std::lock_guard lk(mu_);
    const int64_t now = clock_.mono_ns();
    armed_ = kNoDeadline;  // the timer fired: nothing is armed any more
    advance(now);
    rearm(now);
}

int64_t Cmos::next_deadline_ns() const {
    std::lock_guard lk(mu_);
    return deadline_locked(clock_.mono_ns());
}

}  // namespace vmm::devices
