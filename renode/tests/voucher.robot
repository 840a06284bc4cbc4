*** Settings ***
Documentation     The firmware, flashed as .mpy files, signs the same voucher bytes as
...               the host's reference code.
Resource          ${RENODEKEYWORDS}
Resource          common.resource
Suite Setup       Setup
Suite Teardown    Teardown
Test Teardown     Test Teardown

*** Variables ***
${KEY}            0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
${CONTRACT}       1111111111111111111111111111111111111111

*** Test Cases ***
Flashed Firmware Signs The Reference Voucher
    Boot Board
    ${log}=    Flash Nanotoll Firmware    ${BOARD}
    Should Contain    ${log}    verified by sha256
    Wait For REPL
    ${line}=    Run On REPL
    ...    import voucher, binascii; s = voucher.VoucherSigner(binascii.unhexlify('${KEY}'), 31337, binascii.unhexlify('${CONTRACT}')); print('VOU' + 'CHER', binascii.hexlify(s.sign_voucher_packed(7, 123456789)).decode())
    ...    VOUCHER    timeout=120
    ${want}=    Host Voucher Hex    ${KEY}    31337    ${CONTRACT}    7    123456789
    Should Be Equal    ${line}    VOUCHER ${want}

Flashing Again Copies Nothing
    Boot Board
    Flash Nanotoll Firmware    ${BOARD}
    ${log}=    Flash Nanotoll Firmware    ${BOARD}
    Should Contain    ${log}    nothing to copy
