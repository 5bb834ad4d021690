import CSkiffSys
import FoundationEssentials
import Glibc
import SkiffSupport

/// The QMP calls that hand QEMU a descriptor: `getfd` with the descriptor attached
/// (SCM_RIGHTS), then the command that names it. QEMU keeps a descriptor received by `getfd`
/// in the monitor that received it, so both travel on one connection, made for them to the
/// VM's second monitor (`VMDocument.qmpFDSocket`) with plain blocking socket calls on a
/// thread of their own (QEMU's QMP reference, docs/interop/qmp-spec).
enum QMPDescriptorChannel {
    /// Connects, negotiates capabilities, passes `fd` as `name` and executes `command`.
    /// Throws `.qmpError` with QEMU's message when a call is refused.
    static func pass(_ fd: Int32, as name: String, socket path: String,
                     then command: String, _ arguments: [String: JSONValue]) async throws(VMManagerError) {
        let result: Result<Void, VMManagerError> = await BlockingThread.run({
            Result { () throws(VMManagerError) in try exchange(fd, name: name, path: path, command: command, arguments: arguments) }
        }, fallback: .failure(.disconnected("cannot start a thread to pass a descriptor")))
        try result.get()
    }

    /// Connects, negotiates capabilities, adds `fd` to descriptor set `set` (`add-fd`) and
    /// executes `command`, which names it as `/dev/fdset/SET`. The set outlives this connection
    /// while something QEMU opened from it is open.
    static func addToSet(_ fd: Int32, set: Int, socket path: String,
                         then command: String, _ arguments: [String: JSONValue]) async throws(VMManagerError) {
        let add: JSONValue = ["execute": "add-fd", "arguments": ["fdset-id": .integer(Int64(set))]]
        let result: Result<Void, VMManagerError> = await BlockingThread.run({
            Result { () throws(VMManagerError) in try exchange(fd, passing: add, path: path, command: command, arguments: arguments) }
        }, fallback: .failure(.disconnected("cannot start a thread to pass a descriptor")))
        try result.get()
    }

    private static func exchange(_ fd: Int32, name: String, path: String, command: String,
                                 arguments: [String: JSONValue]) throws(VMManagerError) {
        try exchange(fd, passing: ["execute": "getfd", "arguments": ["fdname": .string(name)]], path: path, command: command, arguments: arguments)
    }

    /// Sends `passing` with `fd` attached, then `command`, on a new connection to `path`.
    private static func exchange(_ fd: Int32, passing: JSONValue, path: String, command: String,
                                 arguments: [String: JSONValue]) throws(VMManagerError) {
        let sock = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard sock >= 0 else { throw .disconnected("socket: \(String(cString: strerror(errno)))") }
        defer { close(sock) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw .disconnected("connect to \(path): \(String(cString: strerror(errno)))") }
        var reader = LineReader(fd: sock)
        _ = try reader.line()  // the greeting
        try call(sock, &reader, ["execute": "qmp_capabilities"], passing: nil)
        try call(sock, &reader, passing, passing: fd)
        try call(sock, &reader, ["execute": .string(command), "arguments": .object(arguments)], passing: nil)
    }

    /// Sends one command and waits for its answer (skipping events).
    private static func call(_ sock: Int32, _ reader: inout LineReader, _ message: JSONValue, passing fd: Int32?) throws(VMManagerError) {
        guard var data = try? JSONEncoder().encode(message) else { throw .disconnected("cannot encode \(message)") }
        data.append(0x0a)
        let sent = data.withUnsafeBytes { raw -> Int in
            if let fd { return Int(skiff_send_with_fd(sock, raw.baseAddress, UInt(raw.count), fd)) }
            return send(sock, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
        }
        guard sent == data.count else { throw .disconnected("sending to QMP failed") }
        while true {
            let line = try reader.line()
            guard let answer = try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)) else { continue }
            if answer["return"] != nil { return }
            if let error = answer["error"] {
                throw .qmp(errorClass: error["class"]?.stringValue ?? "GenericError", description: error["desc"]?.stringValue ?? "\(error)")
            }
        }
    }

    /// Newline-separated lines from a blocking socket.
    private struct LineReader {
        let fd: Int32
        var pending: [UInt8] = []

        mutating func line() throws(VMManagerError) -> String {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                if let newline = pending.firstIndex(of: 0x0a) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    return line
                }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw .disconnected("QMP closed the connection or did not answer") }
                pending += buffer[0..<n]
            }
        }
    }
}
