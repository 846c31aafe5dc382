/// The use order of a set of keys, with O(1) touch, remove and oldest-first walk.
///
/// A doubly linked list threaded through arrays (slots are reused through a free list), so a
/// bounded table can evict its least recently used key without scanning.
struct LeastRecentlyUsedOrder<Key: Hashable & Sendable>: Sendable {
    private struct Node: Sendable {
        var key: Key
        var older: Int?
        var newer: Int?
    }

    private var nodes: [Node?] = []
    private var freeSlots: [Int] = []
    private var slotByKey: [Key: Int] = [:]
    private var oldest: Int?
    private var newest: Int?

    var count: Int { slotByKey.count }

    /// Marks `key` as the most recently used, inserting it if absent.
    mutating func touch(_ key: Key) {
        if let slot = slotByKey[key] {
            guard slot != newest else { return }
            unlink(slot)
            linkAsNewest(slot)
            return
        }
        let node = Node(key: key, older: nil, newer: nil)
        let slot: Int
        if let free = freeSlots.popLast() {
            nodes[free] = node
            slot = free
        } else {
            nodes.append(node)
            slot = nodes.count - 1
        }
        slotByKey[key] = slot
        linkAsNewest(slot)
    }

    mutating func remove(_ key: Key) {
        guard let slot = slotByKey.removeValue(forKey: key) else { return }
        unlink(slot)
        nodes[slot] = nil
        freeSlots.append(slot)
    }

    /// The oldest key for which `isEvictable` holds, walking from the least recently used.
    func oldestKey(where isEvictable: (Key) -> Bool) -> Key? {
        var cursor = oldest
        while let slot = cursor, let node = nodes[slot] {
            if isEvictable(node.key) { return node.key }
            cursor = node.newer
        }
        return nil
    }

    /// Keys from least to most recently used (for tests and diagnostics).
    var keysOldestFirst: [Key] {
        var keys: [Key] = []
        var cursor = oldest
        while let slot = cursor, let node = nodes[slot] {
            keys.append(node.key)
            cursor = node.newer
        }
        return keys
    }

    private mutating func unlink(_ slot: Int) {
        guard let node = nodes[slot] else { return }
        if let older = node.older { nodes[older]?.newer = node.newer } else { oldest = node.newer }
        if let newer = node.newer { nodes[newer]?.older = node.older } else { newest = node.older }
        nodes[slot]?.older = nil
        nodes[slot]?.newer = nil
    }

    private mutating func linkAsNewest(_ slot: Int) {
        nodes[slot]?.older = newest
        nodes[slot]?.newer = nil
        if let newest { nodes[newest]?.newer = slot }
        newest = slot
        if oldest == nil { oldest = slot }
    }
}
