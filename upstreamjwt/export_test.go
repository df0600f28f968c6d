package upstreamjwt

// Examined counts the entries a ReplayCache has looked at to find expired
// ones: the work done beyond one map lookup and one insert per Check.
func (c *ReplayCache) Examined() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.examined
}

// Len is the number of jti the cache holds.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
