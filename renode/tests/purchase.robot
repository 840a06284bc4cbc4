*** Settings ***
Documentation     A flashed, provisioned board buys weather over its UART link to the
...               broker and the gateway; the chain settles what it paid.
...               Under Renode this needs the broker link (a second UART on a socket
...               terminal, see ../stm32f4_discovery.resc) and a board layer for the
...               target, which only the QEMU board has so far: tagged qemu-only.
Resource          ${RENODEKEYWORDS}
Resource          common.resource
Suite Setup       Run Keywords    Setup    AND    Start Payment Stack
Suite Teardown    Run Keywords    Teardown    AND    Stop Payment Stack
Test Teardown     Test Teardown
Test Tags         qemu-only

*** Test Cases ***
Provisioned Board Pays And The Chain Settles
    Boot Board
    Flash Nanotoll Firmware    ${BOARD}
    Wait For REPL
    ${channel}=    Provision Board    ${BOARD}
    Wait For REPL
    Write Line To Uart    import nt_buy; nt_buy.run('weather', 2)
    Wait For Line On Uart    PURCHASE 1 ok 1500    timeout=120
    Wait For Line On Uart    PURCHASE 2 ok 3000    timeout=120
    Wait For Line On Uart    PURCHASES DONE    timeout=60
    Settle And Check Paid    3000
