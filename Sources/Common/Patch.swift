/// JSON Merge Patch (RFC 7396 §2): objects merge member by member, `null`
/// removes a member, anything else replaces the target.
extension JSON {
    public func mergePatched(with patch: JSON) -> JSON {
        guard case let .object(patchMembers) = patch else { return patch }
        var result: JSON = objectValue != nil ? self : .object([])
        for (key, value) in patchMembers {
            if value.isNull {
                result.remove(key)
            } else {
                result.set(key, (result[key] ?? .null).mergePatched(with: value))
            }
        }
        return result
    }
}
