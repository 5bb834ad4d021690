/// The VM's host half as the SCSI controller's host.
struct VMSCSIHost: SCSIHost {
    let vm: any VMHost

    func attachDisk(id: String, path: String, readOnly: Bool, controller: Int, lun: Int) async throws {
        try await vm.attachDisk(id: id, path: path, readOnly: readOnly, controller: controller, lun: lun)
    }

    func detachDisk(id: String) async throws {
        try await vm.detachDisk(id: id)
    }
}
