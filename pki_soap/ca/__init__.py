"""The certificate authority: keys, CSRs, names, the serial file, signing, policy, exports."""
