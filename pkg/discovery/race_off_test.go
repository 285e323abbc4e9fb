//go:build !race

package discovery

const raceDetector = false
