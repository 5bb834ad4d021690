/// One interface of the pod's network namespace on the host (the CNI veth), as the network
/// controller mirrors it into the VM.
public struct PodInterface: Sendable, Equatable {
    public var name: String
    /// `aa:bb:cc:dd:ee:ff`; the guest's NIC gets it, so frames addressed to the veth are the
    /// guest's.
    public var mac: String
    public var mtu: Int
    /// CIDR notation (`10.88.0.5/16`).
    public var addresses: [String]
    public var routes: [PodRoute]

    public init(name: String, mac: String, mtu: Int, addresses: [String], routes: [PodRoute]) {
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.addresses = addresses
        self.routes = routes
    }
}

/// A route through an interface: `destination` in CIDR notation or `default`; `gateway`
/// empty when the destination is on the link.
public struct PodRoute: Sendable, Equatable {
    public var destination: String
    public var gateway: String
    public init(destination: String, gateway: String) {
        self.destination = destination
        self.gateway = gateway
    }
}

/// What the network controller needs of the host: the pod's network namespace (read it, make
/// a tap in it, mirror traffic with tc) and the VM (hot-add and remove a NIC on a tap).
public protocol NetworkHost: Sendable {
    /// The namespace's interfaces other than loopback, with their addresses and routes.
    func interfaces(in netns: String) async throws -> [PodInterface]
    /// Opens (makes) tap `name` in the namespace; its descriptor, which the caller closes.
    func openTap(in netns: String, name: String) throws -> Int32
    /// Sets the tap's MAC and MTU and brings it up, then redirects every frame arriving on
    /// the veth to the tap and back (tc ingress qdiscs with a match-all mirred filter each way).
    func mirror(in netns: String, veth: String, tap: String, mac: String, mtu: Int) async throws
    /// Removes the veth's ingress qdisc (and its filter); a veth or namespace already gone is done.
    func unmirror(in netns: String, veth: String) async throws
    func addNIC(id: String, tapFD: Int32, mac: String) async throws
    func removeNIC(id: String) async throws
}

/// What it needs of the guest: one NIC configured in the VM's network namespace.
public protocol NetworkGuest: Sendable {
    func configureInterface(mac: String, mtu: Int, addresses: [String], routes: [PodRoute], timeout: Duration) async throws -> String
}
