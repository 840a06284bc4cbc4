*** Settings ***
Documentation     The board boots MicroPython with what the agent needs: a REPL, time,
...               asyncio, a random source and a file system that keeps what is written.
Resource          ${RENODEKEYWORDS}
Resource          common.resource
Suite Setup       Setup
Suite Teardown    Teardown
Test Teardown     Test Teardown

*** Test Cases ***
Boots To The REPL
    Boot Board
    Run On REPL    print('AN' + 'SWER', 6 * 7)    ANSWER 42

Has Time, Asyncio And A Random Source
    Boot Board
    Write Line To Uart    import asyncio, time, os
    Write Line To Uart    async def nap(): await asyncio.sleep_ms(200)
    Write Line To Uart
    Run On REPL    t = time.ticks_ms(); asyncio.run(nap()); print('SLE' + 'PT', time.ticks_diff(time.ticks_ms(), t) >= 200, len(os.urandom(32)))
    ...            SLEPT True 32

Keeps Files Over A Soft Reset
    Boot Board
    Run On REPL    f = open('/kept.txt', 'w'); f.write('still here'); f.close(); print('WRO' + 'TE')    WROTE
    Write Char On Uart    \x04
    Wait For Line On Uart    soft reboot
    Wait For REPL
    Run On REPL    print('READ', open('/kept.txt').read())    READ still here
