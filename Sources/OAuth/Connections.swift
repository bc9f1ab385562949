import Common

/// The apps a user has connected (SPEC 5.2).
public struct ConnectionService {
    let env: Environment
    let store: Store

    public init(env: Environment, store: Store) {
        self.env = env
        self.store = store
    }

    /// One page of the user's connections, oldest first, and how many the user has in all.
    public func list(userID: String, limit: Int, offset: Int) throws -> (connections: [(UserConnection, Client)], total: Int) {
        try store.read {
            let page = try store.connections(userID: userID, limit: limit, offset: offset)
            return (try page.connections.compactMap { c in try store.client(c.clientID).map { (c, $0) } }, page.total)
        }
    }

    public func get(userID: String, clientID: String) throws -> (UserConnection, Client)? {
        try store.read {
            guard let c = try store.connection(userID: userID, clientID: clientID), let client = try store.client(clientID) else { return nil }
            return (c, client)
        }
    }

    /// Revokes every token of the user for the client, forgets the consent
    /// and tells the client over the back channel when it listens.
    public func delete(userID: String, clientID: String) throws -> Bool {
        try store.write {
            // The connection, its unredeemed codes and approved device codes go first: on PostgreSQL
            // (read committed) those writes wait for a redemption in flight to commit, so the
            // revocation after them sees the family it created (SPEC 5.2: no grant outlives its connection).
            // A disconnect that finds none (never made, or deleted by a racing one: a double click on two
            // nodes) ends nothing and queues no second logout token (review, session 28).
            guard try store.deleteConnection(userID: userID, clientID: clientID) else { return false }
            try store.revokeFamilies(userID: userID, clientID: clientID, at: env.now())
            if let client = try store.client(clientID) {
                try BackchannelLogout.connectionEnded(userID: userID, client: client, store: store, env: env)
            }
            return true
        }
    }
}
