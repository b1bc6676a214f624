/// An array whose first `inlineCapacity` elements live inside the value itself, for the short per-request lists of
/// the limiter (the limits of a request, its rules' verdicts): one or two elements is the common case, and keeping
/// them inline is what lets a decision allocate nothing. Longer lists spill to a heap array.
@frozen
public struct SmallArray<let inlineCapacity: Int, Element>: RandomAccessCollection, MutableCollection {
    // Inlinable (with its storage visible to clients): the proxy reads the outcome's statuses per request, and a call
    // into the unspecialised generic code looked up this type's metadata on every access.
    @usableFromInline var inline: InlineArray<inlineCapacity, Element?>
    @usableFromInline var spill: [Element]
    @usableFromInline var storedCount: Int
    @inlinable
    public var count: Int { self.storedCount }

    @inlinable
    public init() {
        self.inline = InlineArray(repeating: nil)
        self.spill = []
        self.storedCount = 0
    }

    @inlinable
    public init<S: Sequence<Element>>(_ elements: S) {
        self.init()
        for element in elements { self.append(element) }
    }

    @inlinable
    public var startIndex: Int { 0 }
    @inlinable
    public var endIndex: Int { self.count }

    @inlinable
    public subscript(position: Int) -> Element {
        get {
            precondition(position >= 0 && position < self.count, "index out of range")
            return position < inlineCapacity ? self.inline[position].unsafelyUnwrapped : self.spill[position - inlineCapacity]
        }
        set {
            precondition(position >= 0 && position < self.count, "index out of range")
            if position < inlineCapacity {
                self.inline[position] = newValue
            } else {
                self.spill[position - inlineCapacity] = newValue
            }
        }
    }

    @inlinable
    public mutating func append(_ element: Element) {
        if self.count < inlineCapacity {
            self.inline[self.count] = element
        } else {
            self.spill.append(element)
        }
        self.storedCount += 1
    }

    /// Empties the array, keeping any spill capacity for reuse.
    @inlinable
    public mutating func removeAll() {
        for index in 0..<Swift.min(self.count, inlineCapacity) { self.inline[index] = nil }
        self.spill.removeAll(keepingCapacity: true)
        self.storedCount = 0
    }

    /// Moves the element at `position` to the front, keeping the order of the others.
    @inlinable
    public mutating func moveToFront(_ position: Int) {
        guard position > 0 else { return }
        let element = self[position]
        var index = position
        while index > 0 {
            self[index] = self[index - 1]
            index -= 1
        }
        self[0] = element
    }
}

extension SmallArray: ExpressibleByArrayLiteral {
    @inlinable
    public init(arrayLiteral elements: Element...) {
        self.init(elements)
    }
}

extension SmallArray: Equatable where Element: Equatable {
    @inlinable
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.elementsEqual(rhs)
    }
}

extension SmallArray: Sendable where Element: Sendable {}
