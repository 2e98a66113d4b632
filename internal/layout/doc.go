// Package layout checks the module's import rules (our small version of tailscale's depaware):
// nips/ is protocol only, internal/ never reaches into a component, and components never import
// each other. It has no code outside its test.
package layout
