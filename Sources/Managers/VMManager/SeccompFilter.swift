import CSkiffSpawn
import Glibc

/// A seccomp program (classic BPF, seccomp(2)) that lets a process make only the system calls
/// it names and kills the whole process at any other (SECCOMP_RET_KILL_PROCESS), built once by
/// libseccomp in the parent and installed in the child before it execs.
/// `@unchecked Sendable`: the program is written once, in `init`, and only read after.
public final class SeccompFilter: @unchecked Sendable {
    /// The system calls allowed, by libseccomp's x86_64 names.
    public let allowed: [String]
    private let program: UnsafeMutablePointer<sock_filter>
    private let length: UInt16

    /// Builds the program. Throws `.invalidConfiguration` for a name libseccomp does not know
    /// or when libseccomp fails.
    public init(allowing names: [String]) throws(VMManagerError) {
        var program: UnsafeMutablePointer<sock_filter>?
        var length: UInt16 = 0
        var unknown: Int32 = -1
        let cStrings = names.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        let rc = cStrings.map { UnsafePointer($0) }.withUnsafeBufferPointer { buffer in
            skiff_seccomp_allow_list(buffer.baseAddress, Int32(buffer.count), &program, &length, &unknown)
        }
        guard rc == 0, let program else {
            if unknown >= 0, Int(unknown) < names.count { throw .invalidConfiguration("seccomp: no system call named \(names[Int(unknown)])") }
            throw .invalidConfiguration("seccomp: libseccomp failed: \(String(cString: strerror(-rc)))")
        }
        allowed = names
        self.program = program
        self.length = length
    }

    deinit { free(program) }

    /// Starts `path` under this filter, confined when `confinement` is given: see
    /// `skiff_spawn_filtered` for the child's setup. The child's pid, or minus the errno when
    /// fork failed.
    func spawn(_ path: String, argv: [UnsafeMutablePointer<CChar>?], envp: [UnsafeMutablePointer<CChar>?], outputFD: Int32,
               confinement: QEMUConfinement? = nil) -> pid_t {
        guard let confinement else { return skiff_spawn_filtered(path, argv, envp, outputFD, program, length, nil) }
        return confinement.withCConfinement { skiff_spawn_filtered(path, argv, envp, outputFD, program, length, $0) }
    }
}
