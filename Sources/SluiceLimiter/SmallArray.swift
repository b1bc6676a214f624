/// An array whose first `inlineCapacity` elements live inside the value itself, for the short per-request lists of
/// the limiter (the limits of a request, its rules' verdicts): one or two elements is the common case, and keeping
/// them inline is what lets a decision allocate nothing. Longer lists spill to a heap array.
public struct SmallArray<let inlineCapacity: Int, Element>: RandomAccessCollection, MutableCollection {
    private var inline: InlineArray<inlineCapacity, Element?>
    private var spill: [Element]
    public private(set) var count: Int

    public init() {
        self.inline = InlineArray(repeating: nil)
        self.spill = []
        self.count = 0
    }

    public init<S: Sequence<Element>>(_ elements: S) {
        self.init()
        for element in elements { self.append(element) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { self.count }

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

    public mutating func append(_ element: Element) {
        if self.count < inlineCapacity {
            self.inline[self.count] = element
        } else {
            self.spill.append(element)
        }
        self.count += 1
    }

    /// Empties the array, keeping any spill capacity for reuse.
    public mutating func removeAll() {
        for index in 0..<Swift.min(self.count, inlineCapacity) { self.inline[index] = nil }
        self.spill.removeAll(keepingCapacity: true)
        self.count = 0
    }

    /// Moves the element at `position` to the front, keeping the order of the others.
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
    public init(arrayLiteral elements: Element...) {
        self.init(elements)
    }
}

extension SmallArray: Equatable where Element: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.elementsEqual(rhs)
    }
}

extension SmallArray: Sendable where Element: Sendable {}
