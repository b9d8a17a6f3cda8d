//! PKCS#11 sealer (todo)
