import CSkiffSys
import Glibc

/// What SyncWithHost does in the guest: the wall clock set to the host's, and the host's
/// random bytes mixed into the kernel's pool with the CRNG reseeded at once (random(4):
/// RNDADDENTROPY, RNDRESEEDCRNG), so that copies of one template neither keep its clock nor
/// share what their random generators hand out next.
enum HostSync {
    /// Throws InvalidArgument for fewer than 32 or more than 512 bytes of entropy or a clock at
    /// or before the epoch, FailedPrecondition when the kernel refuses either step.
    static func apply(realtimeUnixNanos: Int64, entropy: [UInt8]) throws(AgentError) {
        guard (32...512).contains(entropy.count) else {
            throw .invalidArgument("entropy of \(entropy.count) bytes: 32 to 512")
        }
        guard realtimeUnixNanos > 0 else { throw .invalidArgument("realtime_unix_nanos must be positive") }
        var now = timespec(tv_sec: Int(realtimeUnixNanos / 1_000_000_000), tv_nsec: Int(realtimeUnixNanos % 1_000_000_000))
        guard clock_settime(CLOCK_REALTIME, &now) == 0 else {
            throw .failedPrecondition("setting the wall clock: \(String(cString: strerror(errno)))")
        }
        let rc = entropy.withUnsafeBytes { skiff_add_entropy_and_reseed($0.baseAddress, UInt($0.count)) }
        guard rc == 0 else { throw .failedPrecondition("adding the host's entropy: \(String(cString: strerror(-rc)))") }
    }
}
