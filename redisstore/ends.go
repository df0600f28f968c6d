package redisstore

import "github.com/cloakroom/cloakroom"

// endsChannel is the pub/sub channel on which the scripts announce the
// sessions they end.
func (s *Store) endsChannel() string { return s.prefix + "ends" }

// endKeyMessage announces the end of the session under key.
func endKeyMessage(key cloakroom.Key) string { return "k" + string(key[:]) }
