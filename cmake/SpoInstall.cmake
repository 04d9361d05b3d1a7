# SPDX-License-Identifier: MIT
# `cmake --install` installs the headers and a CMake package: find_package(spo CONFIG REQUIRED) -> spo::spo.
include(CMakePackageConfigHelpers)

install(DIRECTORY include/spo DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS spo EXPORT spoTargets)
if(TARGET spo_mpi)
  install(TARGETS spo_mpi EXPORT spoMpiTargets)
  install(EXPORT spoMpiTargets NAMESPACE spo:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/spo)
endif()
install(EXPORT spoTargets NAMESPACE spo:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/spo)
configure_package_config_file(cmake/spoConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/spoConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/spo PATH_VARS CMAKE_INSTALL_INCLUDEDIR)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/spoConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/spoConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/spoConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/spo)
