import FoundationEssentials
import Glibc
import Testing
@testable import VMManager

@Suite struct VMTemplateStoreTests {
    private func document(id: String, memory: Int = 256) throws -> VMDocument {
        try VMBuilder(id: id, stateDirectory: "/run/skiff/\(id)", kernel: "/k/vmlinux", initrd: "/k/initrd")
            .share(hostPath: "/run/skiff/\(id)/share", tag: "skiffshare").memory(mib: memory).build()
    }

    @Test func twoVMsOfOneShapeHaveOneIdentityAndAnotherShapeAnother() throws {
        let a = VMTemplateStore.identity(of: try document(id: "pod-a"), binary: "/usr/bin/qemu-system-x86_64")
        let b = VMTemplateStore.identity(of: try document(id: "pod-b"), binary: "/usr/bin/qemu-system-x86_64")
        #expect(a == b, "a VM's own paths and id are not its shape")
        #expect(!a.contains("pod-a"))
        let bigger = VMTemplateStore.identity(of: try document(id: "pod-a", memory: 512), binary: "/usr/bin/qemu-system-x86_64")
        #expect(bigger != a)
        #expect(VMTemplateStore.key(of: bigger) != VMTemplateStore.key(of: a))
        #expect(VMTemplateStore.key(of: a).count == 16)
    }

    @Test func aTemplateIsFoundOnlyWhenItsIdentityMatchesInFull() throws {
        let dir = "/tmp/skiff-template-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        defer { VMTemplateStore.remove(dir) }
        let store = VMTemplateStore(directory: dir)
        let identity = "shape one\n"
        #expect(store.template(for: identity) == nil)
        let lock = try #require(store.lockForBuilding(identity))
        #expect(store.lockForBuilding(identity) == nil, "one maker at a time")
        let build = store.buildDirectory(forVM: "pod1")
        #expect(mkdir(build, 0o700) == 0)
        for file in ["memory", "state"] {
            #expect(FileManager.default.createFile(atPath: build + "/" + file, contents: Data("x".utf8)))
        }
        let published = try store.publish(build: build, identity: identity)
        #expect(access(build, F_OK) != 0, "the build directory became the template")
        #expect(store.template(for: identity) == published)
        #expect(store.template(for: "shape two\n") == nil)
        // A template whose identity file says otherwise (a key collision, an edited file) is not used.
        #expect(FileManager.default.createFile(atPath: published.identityFile, contents: Data("shape three\n".utf8)))
        #expect(store.template(for: identity) == nil)
        withExtendedLifetime(lock) {}
    }

    @Test func aDeadMakersLockIsFreeAgain() throws {
        let dir = "/tmp/skiff-template-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        defer { VMTemplateStore.remove(dir) }
        let store = VMTemplateStore(directory: dir)
        var lock = store.lockForBuilding("shape\n")
        #expect(lock != nil)
        lock = nil
        #expect(store.lockForBuilding("shape\n") != nil)
    }
}
