package oidcbff

// MaxSessionsOfSID is how many sessions the index of one provider session keeps.
const MaxSessionsOfSID = maxSessionsOfSID
