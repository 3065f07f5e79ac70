package postgres

// The registry lock's keys, for the external tests that hold it.
const (
	RegistryLockClass = registryLockClass
	RegistryLockID    = registryLockID
)
