# Arithmetic modulo p = 2^256 - 2^32 - 977 (the secp256k1 field) for ARMv7-M and
# ARMv8-M mainline (Cortex-M3/M4/M7/M33), in inline Thumb-2 assembler: mul, sub and
# mul_small with 32-bit limbs, and comb_digits.
#
# The functions, the slot layout of the work buffer W and the results are those of
# _field_viper.py (read its header), bit for bit: the same reductions, done on
# 32-bit limbs instead of 16-bit ones. What makes it faster is UMLAL, the
# 32x32->64 multiply-accumulate that viper cannot emit: a product is 64 of them
# instead of 256 16-bit multiplies with their shifts and masks.
#
# MicroPython's inline assembler has no mnemonic for UMULL, UMLAL, MLA or a 32-bit
# ADC with an immediate, so they are written as their two halfwords with data():
#   UMULL lo, hi, n, m    0xFBA0 | n,  lo << 12 | hi << 8 | m
#   UMLAL lo, hi, n, m    0xFBE0 | n,  lo << 12 | hi << 8 | m   (hi:lo += n * m)
#   MLA   d, n, m, a      0xFB00 | n,  a << 12 | d << 8 | m     (d = a + n * m)
#   ADC.W d, n, #0        0xF140 | n,  d << 8                   (d = n + carry)
# These exist on ARMv7-M and later only (a Cortex-M0+ faults on them), so this
# module refuses to load elsewhere and secp256k1.py falls back to _field_viper.py.
#
# The asm kernels take the work buffer as an argument (the inline assembler sees
# no globals); mul, sub and mul_small are small viper functions that pass it. The
# module does not import _field_viper.py: on a board native code is copied into the
# heap, and this one's is the smaller.
#
# No kernel branches on the field values it is given (only on slot numbers, counts
# and the comb's shape): every limb is read, multiplied and written the same way,
# and the conditional folds are done with masks or with a carry multiplied in, so
# each runs the same instructions for every value. The Cortex-M3's UMULL/UMLAL end
# early for small operands (cycles, not instructions); docs/boards.md says why that
# is acceptable.
import sys

import micropython

# sys.implementation._mpy names the native architecture in bits 10-15: 5 is
# ARMv7-M, 6-8 ARMv7E-M (with and without a float unit; ARMv8-M mainline boards
# report these too). Anything else has no UMLAL.
if not 5 <= (sys.implementation._mpy >> 10) & 0x3F <= 8:
    raise ImportError("_field_thumb2 needs ARMv7-M or later")

W = None

# secp256k1.py inverts in the field (Fermat) rather than with Euclid on big integers:
# 270 multiplications cost less here than Euclid's big-integer steps.
INVERT_IN_FIELD = True


@micropython.asm_thumb
def _mul(r0, r1, r2, r3):
    # slot r1 = slot r2 * slot r3 mod p in buffer r0; r1 bits 8 and up: how many
    # times the result is squared again after that (square_n). The 512-bit
    # product goes to slots 0 and 1 (t), one row a limb of x: t[i + j] += x[i] *
    # y[j] with UMLAL into hi:lo = t[i + j] (lo) and 0 (hi), then the row's carry
    # added. r8: x[i], r9: the destination, r10: the squarings left.
    push({r8, r9, r10})
    lsr(r4, r1, 8)
    mov(r10, r4)
    mov(r4, 0xFF)
    and_(r1, r4)
    lsl(r1, r1, 5)
    add(r1, r1, r0)
    mov(r9, r1)
    lsl(r2, r2, 5)
    add(r1, r2, r0)
    lsl(r3, r3, 5)
    add(r2, r3, r0)
    mov(r3, r0)
    label(AGAIN)
    mov(r5, 0)
    str(r5, [r3, 0])
    str(r5, [r3, 4])
    str(r5, [r3, 8])
    str(r5, [r3, 12])
    str(r5, [r3, 16])
    str(r5, [r3, 20])
    str(r5, [r3, 24])
    str(r5, [r3, 28])
    mov(r0, 8)
    label(ROW)
    ldr(r4, [r1, 0])
    mov(r8, r4)
    mov(r7, 0)
    ldr(r4, [r2, 0])
    ldr(r5, [r3, 0])
    mov(r6, 0)
    data(2, 0xFBE4, 0x5608)  # UMLAL r5, r6, r4, r8
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r3, 0])
    ldr(r4, [r2, 4])
    ldr(r5, [r3, 4])
    mov(r6, 0)
    data(2, 0xFBE4, 0x5608)  # UMLAL r5, r6, r4, r8
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r3, 4])
    ldr(r4, [r2, 8])
    ldr(r5, [r3, 8])
    mov(r6, 0)
    data(2, 0xFBE4, 0x5608)  # UMLAL r5, r6, r4, r8
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r3, 8])
    ldr(r4, [r2, 12])
    ldr(r5, [r3, 12])
    mov(r6, 0)
    data(2, 0xFBE4, 0x5608)  # UMLAL r5, r6, r4, r8
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r3, 12])
    ldr(r4, [r2, 16])
    ldr(r5, [r3, 16])
    mov(r6, 0)
    data(2, 0xFBE4, 0x5608)  # UMLAL r5, r6, r4, r8
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r3, 16])
    ldr(r4, [r2, 20])
    ldr(r5, [r3, 20])
    mov(r6, 0)
    data(2, 0xFBE4, 0x5608)  # UMLAL r5, r6, r4, r8
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r3, 20])
    ldr(r4, [r2, 24])
    ldr(r5, [r3, 24])
    mov(r6, 0)
    data(2, 0xFBE4, 0x5608)  # UMLAL r5, r6, r4, r8
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r3, 24])
    ldr(r4, [r2, 28])
    ldr(r5, [r3, 28])
    mov(r6, 0)
    data(2, 0xFBE4, 0x5608)  # UMLAL r5, r6, r4, r8
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r3, 28])
    str(r7, [r3, 32])
    add(r1, 4)
    add(r3, 4)
    sub(r0, 1)
    bne(ROW)
    sub(r3, 32)
    # Reduce: 2^256 = 2^32 + 977 (mod p), so the high half h folds in as h * 977
    # at the same limbs plus h one limb up. r8 = 977; h[i] alternates between r0
    # and r1 so that h[i - 1] is still there; r7 is the carry.
    movw(r8, 977)
    mov(r2, r9)
    ldr(r0, [r3, 32])
    ldr(r5, [r3, 0])
    mov(r6, 0)
    data(2, 0xFBE0, 0x5608)  # UMLAL r5, r6, r0, r8
    str(r5, [r2, 0])
    mov(r7, r6)
    ldr(r1, [r3, 36])
    ldr(r5, [r3, 4])
    mov(r6, 0)
    data(2, 0xFBE1, 0x5608)  # UMLAL r5, r6, r1, r8
    add(r5, r5, r0)
    data(2, 0xF146, 0x0600)  # ADC.W r6, r6, #0
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r2, 4])
    ldr(r0, [r3, 40])
    ldr(r5, [r3, 8])
    mov(r6, 0)
    data(2, 0xFBE0, 0x5608)  # UMLAL r5, r6, r0, r8
    add(r5, r5, r1)
    data(2, 0xF146, 0x0600)  # ADC.W r6, r6, #0
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r2, 8])
    ldr(r1, [r3, 44])
    ldr(r5, [r3, 12])
    mov(r6, 0)
    data(2, 0xFBE1, 0x5608)  # UMLAL r5, r6, r1, r8
    add(r5, r5, r0)
    data(2, 0xF146, 0x0600)  # ADC.W r6, r6, #0
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r2, 12])
    ldr(r0, [r3, 48])
    ldr(r5, [r3, 16])
    mov(r6, 0)
    data(2, 0xFBE0, 0x5608)  # UMLAL r5, r6, r0, r8
    add(r5, r5, r1)
    data(2, 0xF146, 0x0600)  # ADC.W r6, r6, #0
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r2, 16])
    ldr(r1, [r3, 52])
    ldr(r5, [r3, 20])
    mov(r6, 0)
    data(2, 0xFBE1, 0x5608)  # UMLAL r5, r6, r1, r8
    add(r5, r5, r0)
    data(2, 0xF146, 0x0600)  # ADC.W r6, r6, #0
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r2, 20])
    ldr(r0, [r3, 56])
    ldr(r5, [r3, 24])
    mov(r6, 0)
    data(2, 0xFBE0, 0x5608)  # UMLAL r5, r6, r0, r8
    add(r5, r5, r1)
    data(2, 0xF146, 0x0600)  # ADC.W r6, r6, #0
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r2, 24])
    ldr(r1, [r3, 60])
    ldr(r5, [r3, 28])
    mov(r6, 0)
    data(2, 0xFBE1, 0x5608)  # UMLAL r5, r6, r1, r8
    add(r5, r5, r0)
    data(2, 0xF146, 0x0600)  # ADC.W r6, r6, #0
    add(r5, r5, r7)
    data(2, 0xF146, 0x0700)  # ADC.W r7, r6, #0
    str(r5, [r2, 28])
    # What spilled past 2^256: v = h[7] + carry (r6:r5, below 2^33). Fold it once
    # more, adding v * 977 + v * 2^32 = r4 + (r7 + carry) 2^32 + r6 2^64.
    add(r5, r1, r7)
    mov(r6, 0)
    data(2, 0xF146, 0x0600)  # ADC.W r6, r6, #0
    data(2, 0xFBA5, 0x4708)  # UMULL r4, r7, r5, r8
    data(2, 0xFB06, 0x7708)  # MLA r7, r6, r8, r7
    add(r7, r7, r5)
    data(2, 0xF146, 0x0600)  # ADC.W r6, r6, #0
    mov(r1, 0)
    ldr(r0, [r2, 0])
    add(r0, r0, r4)
    str(r0, [r2, 0])
    ldr(r0, [r2, 4])
    adc(r0, r7)
    str(r0, [r2, 4])
    ldr(r0, [r2, 8])
    adc(r0, r6)
    str(r0, [r2, 8])
    ldr(r0, [r2, 12])
    adc(r0, r1)
    str(r0, [r2, 12])
    ldr(r0, [r2, 16])
    adc(r0, r1)
    str(r0, [r2, 16])
    ldr(r0, [r2, 20])
    adc(r0, r1)
    str(r0, [r2, 20])
    ldr(r0, [r2, 24])
    adc(r0, r1)
    str(r0, [r2, 24])
    ldr(r0, [r2, 28])
    adc(r0, r1)
    str(r0, [r2, 28])
    # A carry out of that wrapped past 2^256 once more, leaving a small value:
    # add (2^32 + 977) times the carry.
    mov(r6, 0)
    adc(r6, r1)
    movw(r4, 977)
    mul(r4, r6)
    ldr(r0, [r2, 0])
    add(r0, r0, r4)
    str(r0, [r2, 0])
    ldr(r0, [r2, 4])
    adc(r0, r6)
    str(r0, [r2, 4])
    ldr(r0, [r2, 8])
    adc(r0, r1)
    str(r0, [r2, 8])
    ldr(r0, [r2, 12])
    adc(r0, r1)
    str(r0, [r2, 12])
    ldr(r0, [r2, 16])
    adc(r0, r1)
    str(r0, [r2, 16])
    ldr(r0, [r2, 20])
    adc(r0, r1)
    str(r0, [r2, 20])
    ldr(r0, [r2, 24])
    adc(r0, r1)
    str(r0, [r2, 24])
    ldr(r0, [r2, 28])
    adc(r0, r1)
    str(r0, [r2, 28])
    mov(r4, r10)
    cmp(r4, 0)
    beq(DONE)
    sub(r4, 1)
    mov(r10, r4)
    mov(r1, r9)
    mov(r2, r9)
    b(AGAIN)
    label(DONE)
    mov(r0, 0)
    pop({r8, r9, r10})


@micropython.asm_thumb
def _sub(r0, r1, r2, r3):
    # slot r1 = slot r2 - slot r3 mod p in buffer r0. A borrow out of the top
    # limb (the difference wrapped by 2^256) is taken back by subtracting
    # 2^32 + 977 (adding p), twice at most, as a mask so that it costs the same
    # either way.
    lsl(r1, r1, 5)
    add(r1, r1, r0)
    lsl(r2, r2, 5)
    add(r2, r2, r0)
    lsl(r3, r3, 5)
    add(r3, r3, r0)
    ldr(r4, [r2, 0])
    ldr(r5, [r3, 0])
    sub(r4, r4, r5)
    str(r4, [r1, 0])
    ldr(r4, [r2, 4])
    ldr(r5, [r3, 4])
    sbc(r4, r5)
    str(r4, [r1, 4])
    ldr(r4, [r2, 8])
    ldr(r5, [r3, 8])
    sbc(r4, r5)
    str(r4, [r1, 8])
    ldr(r4, [r2, 12])
    ldr(r5, [r3, 12])
    sbc(r4, r5)
    str(r4, [r1, 12])
    ldr(r4, [r2, 16])
    ldr(r5, [r3, 16])
    sbc(r4, r5)
    str(r4, [r1, 16])
    ldr(r4, [r2, 20])
    ldr(r5, [r3, 20])
    sbc(r4, r5)
    str(r4, [r1, 20])
    ldr(r4, [r2, 24])
    ldr(r5, [r3, 24])
    sbc(r4, r5)
    str(r4, [r1, 24])
    ldr(r4, [r2, 28])
    ldr(r5, [r3, 28])
    sbc(r4, r5)
    str(r4, [r1, 28])
    sbc(r6, r6)  # all ones after a borrow, else 0
    movw(r7, 977)
    and_(r7, r6)
    mov(r5, 1)
    and_(r5, r6)
    mov(r3, 0)
    ldr(r4, [r1, 0])
    sub(r4, r4, r7)
    str(r4, [r1, 0])
    ldr(r4, [r1, 4])
    sbc(r4, r5)
    str(r4, [r1, 4])
    ldr(r4, [r1, 8])
    sbc(r4, r3)
    str(r4, [r1, 8])
    ldr(r4, [r1, 12])
    sbc(r4, r3)
    str(r4, [r1, 12])
    ldr(r4, [r1, 16])
    sbc(r4, r3)
    str(r4, [r1, 16])
    ldr(r4, [r1, 20])
    sbc(r4, r3)
    str(r4, [r1, 20])
    ldr(r4, [r1, 24])
    sbc(r4, r3)
    str(r4, [r1, 24])
    ldr(r4, [r1, 28])
    sbc(r4, r3)
    str(r4, [r1, 28])
    sbc(r6, r6)  # all ones after a borrow, else 0
    movw(r7, 977)
    and_(r7, r6)
    mov(r5, 1)
    and_(r5, r6)
    mov(r3, 0)
    ldr(r4, [r1, 0])
    sub(r4, r4, r7)
    str(r4, [r1, 0])
    ldr(r4, [r1, 4])
    sbc(r4, r5)
    str(r4, [r1, 4])
    ldr(r4, [r1, 8])
    sbc(r4, r3)
    str(r4, [r1, 8])
    ldr(r4, [r1, 12])
    sbc(r4, r3)
    str(r4, [r1, 12])
    ldr(r4, [r1, 16])
    sbc(r4, r3)
    str(r4, [r1, 16])
    ldr(r4, [r1, 20])
    sbc(r4, r3)
    str(r4, [r1, 20])
    ldr(r4, [r1, 24])
    sbc(r4, r3)
    str(r4, [r1, 24])
    ldr(r4, [r1, 28])
    sbc(r4, r3)
    str(r4, [r1, 28])
    mov(r0, 0)


@micropython.asm_thumb
def _mul_small(r0, r1, r2, r3):
    # slot r1 = slot r2 * r3 mod p in buffer r0, for r3 below 2^15: one UMLAL a
    # limb (hi:lo = carry + x[i] * k), then the carry c folded in as c * 977 +
    # c * 2^32, and what that carries out once more the same way.
    lsl(r1, r1, 5)
    add(r1, r1, r0)
    lsl(r2, r2, 5)
    add(r2, r2, r0)
    mov(r7, 0)
    ldr(r4, [r2, 0])
    mov(r6, 0)
    data(2, 0xFBE4, 0x7603)  # UMLAL r7, r6, r4, r3
    str(r7, [r1, 0])
    mov(r7, r6)
    ldr(r4, [r2, 4])
    mov(r6, 0)
    data(2, 0xFBE4, 0x7603)  # UMLAL r7, r6, r4, r3
    str(r7, [r1, 4])
    mov(r7, r6)
    ldr(r4, [r2, 8])
    mov(r6, 0)
    data(2, 0xFBE4, 0x7603)  # UMLAL r7, r6, r4, r3
    str(r7, [r1, 8])
    mov(r7, r6)
    ldr(r4, [r2, 12])
    mov(r6, 0)
    data(2, 0xFBE4, 0x7603)  # UMLAL r7, r6, r4, r3
    str(r7, [r1, 12])
    mov(r7, r6)
    ldr(r4, [r2, 16])
    mov(r6, 0)
    data(2, 0xFBE4, 0x7603)  # UMLAL r7, r6, r4, r3
    str(r7, [r1, 16])
    mov(r7, r6)
    ldr(r4, [r2, 20])
    mov(r6, 0)
    data(2, 0xFBE4, 0x7603)  # UMLAL r7, r6, r4, r3
    str(r7, [r1, 20])
    mov(r7, r6)
    ldr(r4, [r2, 24])
    mov(r6, 0)
    data(2, 0xFBE4, 0x7603)  # UMLAL r7, r6, r4, r3
    str(r7, [r1, 24])
    mov(r7, r6)
    ldr(r4, [r2, 28])
    mov(r6, 0)
    data(2, 0xFBE4, 0x7603)  # UMLAL r7, r6, r4, r3
    str(r7, [r1, 28])
    mov(r7, r6)
    mov(r6, 0)
    movw(r4, 977)
    mul(r4, r7)
    ldr(r5, [r1, 0])
    add(r5, r5, r4)
    str(r5, [r1, 0])
    ldr(r5, [r1, 4])
    adc(r5, r7)
    str(r5, [r1, 4])
    ldr(r5, [r1, 8])
    adc(r5, r6)
    str(r5, [r1, 8])
    ldr(r5, [r1, 12])
    adc(r5, r6)
    str(r5, [r1, 12])
    ldr(r5, [r1, 16])
    adc(r5, r6)
    str(r5, [r1, 16])
    ldr(r5, [r1, 20])
    adc(r5, r6)
    str(r5, [r1, 20])
    ldr(r5, [r1, 24])
    adc(r5, r6)
    str(r5, [r1, 24])
    ldr(r5, [r1, 28])
    adc(r5, r6)
    str(r5, [r1, 28])
    mov(r7, 0)
    adc(r7, r6)
    movw(r4, 977)
    mul(r4, r7)
    ldr(r5, [r1, 0])
    add(r5, r5, r4)
    str(r5, [r1, 0])
    ldr(r5, [r1, 4])
    adc(r5, r7)
    str(r5, [r1, 4])
    ldr(r5, [r1, 8])
    adc(r5, r6)
    str(r5, [r1, 8])
    ldr(r5, [r1, 12])
    adc(r5, r6)
    str(r5, [r1, 12])
    ldr(r5, [r1, 16])
    adc(r5, r6)
    str(r5, [r1, 16])
    ldr(r5, [r1, 20])
    adc(r5, r6)
    str(r5, [r1, 20])
    ldr(r5, [r1, 24])
    adc(r5, r6)
    str(r5, [r1, 24])
    ldr(r5, [r1, 28])
    adc(r5, r6)
    str(r5, [r1, 28])
    mov(r7, 0)
    adc(r7, r6)
    mov(r0, 0)


@micropython.viper
def mul(dst: int, a: int, b: int):
    _mul(W, dst, a, b)


@micropython.viper
def square_n(slot: int, times: int):
    # slot = slot^(2^times), times >= 1, in one call
    _mul(W, slot | (times - 1) << 8, slot, slot)


@micropython.viper
def sub(dst: int, a: int, b: int):
    _sub(W, dst, a, b)


@micropython.viper
def mul_small(dst: int, a: int, k: int):
    _mul_small(W, dst, a, k)


@micropython.asm_thumb
def comb_digits(r0, r1, r2):
    # The comb digits of scalar k (r1, little-endian bytes) into out (r0): see
    # comb_digits() in _field_viper.py. Each digit is gathered from its top row
    # down (digit = digit << 1 | bit), so a row needs no shift of its own.
    # r8 teeth, r9 the last step's start, r10 span, r11 the step's start (the top
    # row's bit position of block 0), r12 the block's; r6 columns.
    push({r8, r9, r10, r11})
    mov(r7, 0xFF)
    mov(r4, r2)
    and_(r4, r7)
    mov(r8, r4)
    lsr(r5, r2, 8)
    and_(r5, r7)
    lsr(r6, r2, 16)
    mov(r10, r6)
    mul(r5, r6)
    mov(r6, r5)
    sub(r4, 1)
    mul(r4, r6)
    sub(r4, 1)
    mov(r9, r4)  # (teeth - 1) columns - 1
    mov(r5, r10)
    add(r4, r4, r5)
    mov(r11, r4)  # (teeth - 1) columns + span - 1: step 0, block 0
    label(STEP)
    mov(r12, r11)
    label(BLOCK)
    mov(r2, r12)
    mov(r3, 0)
    mov(r5, r8)
    label(ROW)
    lsr(r4, r2, 3)
    add(r4, r4, r1)
    ldrb(r4, [r4, 0])
    mov(r7, 7)
    and_(r7, r2)
    lsr(r4, r7)
    mov(r7, 1)
    and_(r4, r7)
    lsl(r3, r3, 1)
    orr(r3, r4)
    sub(r2, r2, r6)
    sub(r5, 1)
    bne(ROW)
    strb(r3, [r0, 0])
    add(r0, 1)
    mov(r4, r10)
    mov(r7, r12)
    add(r7, r7, r4)
    mov(r12, r7)
    mov(r4, r11)
    add(r4, r4, r6)
    cmp(r7, r4)
    bne(BLOCK)
    mov(r4, r11)
    sub(r4, 1)
    mov(r11, r4)
    mov(r7, r9)
    cmp(r4, r7)
    bne(STEP)
    mov(r0, 0)
    pop({r8, r9, r10, r11})
