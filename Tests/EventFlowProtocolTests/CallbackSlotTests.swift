import EventFlowProtocol
import Foundation
import Synchronization
import Testing

@Suite struct CallbackSlotTests {
    final class Calls: Sendable {
        let values = Mutex<[Int]>([])
        /// Return addresses on the stack at each call (capped at 128 by the platform).
        let depths = Mutex<[Int]>([])
    }

    @Test func callsTheCallbackWithItsArgumentAndALaterSetReplacesIt() {
        let slot = CallbackSlot<Int>()
        #expect(!slot.isSet)
        slot(1)  // nothing set: nothing happens
        let first = Calls(), second = Calls()
        slot.set { value in first.values.withLock { $0.append(value) } }
        #expect(slot.isSet)
        slot(2)
        slot(3)
        slot.set { value in second.values.withLock { $0.append(value) } }
        slot(4)
        #expect(first.values.withLock { $0 } == [2, 3])
        #expect(second.values.withLock { $0 } == [4])
    }

    /// A closure kept in generic storage and read back `inout` gains two thunks per read; called
    /// once per flush, the broker's observer took longer and held more memory with every commit.
    /// Through the slot, the 60th call runs at the same stack depth as the first.
    @Test func theCallbackIsNotWrappedAgainOnEveryCall() {
        let slot = CallbackSlot<GroupMarker>()
        let calls = Calls()
        slot.set { _ in calls.depths.withLock { $0.append(Thread.callStackReturnAddresses.count) } }
        for _ in 0..<60 { slot(GroupMarker(flush: 1, batches: [1, 2, 3])) }
        let depths = calls.depths.withLock { $0 }
        #expect(depths.count == 60)
        #expect(depths.first! < 100, "the first call must leave room below the platform's cap of 128")
        #expect(Set(depths) == [depths.first!], "stack depths over 60 calls: \(depths)")
    }

    /// A struct argument, like the broker's flush.
    struct GroupMarker: Sendable {
        var flush: Int
        var batches: [Int]
    }
}
